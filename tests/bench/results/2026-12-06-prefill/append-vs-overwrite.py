import os, time, sys
def run(pre, n=3000, size=1000):
    p='/var/tmp/fsprobe.bin'
    fd=os.open(p, os.O_RDWR|os.O_CREAT|os.O_TRUNC, 0o644)
    if pre:
        os.write(fd, b'\0'*(n*size+4096)); os.fsync(fd); os.lseek(fd,0,0)
    buf=b'x'*size; lat=[]
    for i in range(n):
        t=time.perf_counter(); os.write(fd,buf); os.fdatasync(fd); lat.append(time.perf_counter()-t)
    os.close(fd); os.unlink(p); lat.sort()
    return n/sum(lat), lat[n//2]*1e3, lat[int(n*.99)]*1e3
for pre in (False, True, False, True):
    r=run(pre); print('prezeroed' if pre else 'append   ', '%.0f/s p50 %.3f ms p99 %.3f ms'%r)
