//! Writing query results: an aligned table, CSV, JSON lines or Parquet.

use anyhow::{bail, Context, Result};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use std::io::Write;
use std::sync::Arc;

/// Output formats of `strata query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row (JSON lines).
    Json,
    /// A Parquet file (needs --output).
    Parquet,
}

/// Writes `batches` (all with `schema`) to `out` in `format`.
pub fn write(
    format: Format,
    schema: SchemaRef,
    batches: &[RecordBatch],
    out: &mut (dyn Write + Send),
) -> Result<()> {
    match format {
        Format::Table => {
            let batches = text_batches(&schema, batches)?;
            let table = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?;
            writeln!(out, "{table}")?;
        }
        Format::Csv => {
            let batches = text_batches(&schema, batches)?;
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            if batches.is_empty() {
                // A header even when there are no rows.
                w.write(&RecordBatch::new_empty(text_schema(&schema)))?;
            }
            for b in &batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let batches = text_batches(&schema, batches)?;
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(out);
            for b in &batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        Format::Parquet => {
            let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(out, schema, None)?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
        }
    }
    Ok(())
}

/// Opens `--output`, or stdout; Parquet is never written to a terminal.
pub fn open(format: Format, path: Option<&std::path::Path>) -> Result<Box<dyn Write + Send>> {
    match path {
        Some(p) => {
            let f =
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            Ok(Box::new(std::io::BufWriter::new(f)))
        }
        None => {
            use std::io::IsTerminal;
            if format == Format::Parquet && std::io::stdout().is_terminal() {
                bail!("--format parquet writes binary: give --output FILE (or redirect stdout)");
            }
            Ok(Box::new(std::io::BufWriter::new(std::io::stdout())))
        }
    }
}

/// Binary columns as text for the text formats: UTF-8 as is, anything else
/// as `base64:` followed by the base64 of the bytes.
fn text_batches(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    if !schema.fields().iter().any(|f| is_binary(f.data_type())) {
        return Ok(batches.to_vec());
    }
    let text = text_schema(schema);
    batches
        .iter()
        .map(|b| {
            let columns = b
                .columns()
                .iter()
                .map(|c| match c.data_type() {
                    t if is_binary(t) => binary_as_text(c),
                    _ => Ok(c.clone()),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(RecordBatch::try_new(text.clone(), columns)?)
        })
        .collect()
}

fn text_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if is_binary(f.data_type()) {
                Field::new(f.name(), DataType::Utf8, f.is_nullable())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn is_binary(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

fn binary_as_text(c: &ArrayRef) -> Result<ArrayRef> {
    use base64::Engine;
    let c = datafusion::arrow::compute::cast(c, &DataType::LargeBinary)?;
    let c = c.as_binary::<i64>();
    let text: StringArray = (0..c.len())
        .map(|i| {
            (!c.is_null(i)).then(|| match std::str::from_utf8(c.value(i)) {
                Ok(s) => s.to_string(),
                Err(_) => format!(
                    "base64:{}",
                    base64::engine::general_purpose::STANDARD.encode(c.value(i))
                ),
            })
        })
        .collect();
    Ok(Arc::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BinaryArray, Int64Array};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("data", DataType::Binary, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(BinaryArray::from(vec![
                    Some(&b"{\"t\":1}"[..]),
                    Some(&[0xff, 0x00][..]),
                    None,
                ])),
            ],
        )
        .unwrap()
    }

    fn render(format: Format) -> String {
        let b = batch();
        let mut out = Vec::new();
        write(format, b.schema(), &[b], &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_formats_show_utf8_payloads_as_text_and_others_as_base64() {
        let csv = render(Format::Csv);
        assert_eq!(csv, "n,data\n1,\"{\"\"t\"\":1}\"\n2,base64:/wA=\n3,\n");
        let json = render(Format::Json);
        assert_eq!(
            json,
            "{\"n\":1,\"data\":\"{\\\"t\\\":1}\"}\n{\"n\":2,\"data\":\"base64:/wA=\"}\n{\"n\":3}\n"
        );
        assert!(render(Format::Table).contains("| 2 | base64:/wA= |"));
    }

    #[test]
    fn parquet_output_round_trips() {
        let b = batch();
        let mut out = Vec::new();
        write(
            Format::Parquet,
            b.schema(),
            std::slice::from_ref(&b),
            &mut out,
        )
        .unwrap();
        let reader = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
            bytes::Bytes::from(out),
            1024,
        )
        .unwrap();
        let got: Vec<RecordBatch> = reader.map(|r| r.unwrap()).collect();
        assert_eq!(got, vec![b]);
    }
}
