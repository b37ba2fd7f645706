//! The synthetic sensor readings the tiering benchmark produces (and the
//! query benchmark's archive generator reuses), and the order-independent
//! checksum both replays compare against.

use rand::{Rng, SeedableRng};
use std::io::Write as _;

/// One simulated sensor: every measurement a slow random walk. Shared by
/// the tiering and query benchmarks' generators.
pub struct Device {
    pub id: String,
    pub seq: u64,
    pub temp: f64,
    pub humidity: f64,
    pub battery: f64,
    pub rssi: i32,
}

impl Device {
    /// Device `i`, its starting values drawn from `rng`.
    pub fn new(rng: &mut rand::rngs::StdRng, i: u32) -> Self {
        Self {
            id: format!("dev-{i:04}"),
            seq: rng.random_range(0..100_000),
            temp: rng.random_range(15.0..28.0),
            humidity: rng.random_range(25.0..70.0),
            battery: rng.random_range(3.3..4.2),
            rssi: rng.random_range(-95..-40),
        }
    }

    /// Takes the next reading (one step of every walk); returns its status.
    pub fn step(&mut self, r: &mut rand::rngs::StdRng) -> &'static str {
        self.seq += 1;
        self.temp = (self.temp + r.random_range(-0.08..0.08)).clamp(-20.0, 50.0);
        self.humidity = (self.humidity + r.random_range(-0.3..0.3)).clamp(5.0, 100.0);
        self.battery = (self.battery - r.random_range(0.0..0.0004)).max(2.9);
        self.rssi = (self.rssi + r.random_range(-2..=2)).clamp(-110, -30);
        if self.battery < 3.3 {
            "low_battery"
        } else if r.random_bool(0.004) {
            "degraded"
        } else {
            "ok"
        }
    }
}

/// Readings of `n` devices, each a slow random walk, in random device order:
/// `{"device":"dev-0042","seq":1234,"ts":1795440000123,"temp":21.37,
/// "humidity":48.2,"battery":3.91,"rssi":-67,"status":"ok"}`.
pub struct Sensors {
    rng: rand::rngs::StdRng,
    devices: Vec<Device>,
}

impl Sensors {
    pub fn new(seed: u64, n: u32) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let devices = (0..n).map(|i| Device::new(&mut rng, i)).collect();
        Self { rng, devices }
    }

    /// Writes the next reading, stamped `ts_ms`, into `out`; returns its device.
    pub fn next(&mut self, ts_ms: i64, out: &mut Vec<u8>) -> usize {
        let i = self.rng.random_range(0..self.devices.len());
        let d = &mut self.devices[i];
        let status = d.step(&mut self.rng);
        out.clear();
        let _ = write!(
            out,
            r#"{{"device":"{}","seq":{},"ts":{ts_ms},"temp":{:.2},"humidity":{:.1},"battery":{:.2},"rssi":{},"status":"{status}"}}"#,
            d.id, d.seq, d.temp, d.humidity, d.battery, d.rssi
        );
        i
    }

    pub fn key(&self, device: usize) -> &str {
        &self.devices[device].id
    }
}

/// FNV-1a, summed over records: an order-independent checksum of values.
pub(super) fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}
