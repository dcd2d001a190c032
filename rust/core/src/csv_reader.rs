//! A streaming CSV reader that fills typed columns.
//!
//! Rows are read one at a time into a reused record, so memory holds only the output columns and
//! one row, whatever the file size. Every failure names the file, the line and the column.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The type a column is parsed into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// Integers such as ids and millisecond timestamps; a missing value is an error.
    Int64,
    /// Decimal numbers; an empty field or `NaN` becomes NaN.
    Float32,
    /// Decimal numbers kept in double precision; an empty field or `NaN` becomes NaN.
    Float64,
    /// Any text, coded by first appearance from 1; an empty field gets code 0 (missing).
    Category,
}

/// One column to extract.
#[derive(Clone, Debug)]
pub struct ColumnSpec {
    pub name: String,
    pub kind: ColumnKind,
}

/// How the file is laid out.
#[derive(Clone, Debug)]
pub struct CsvOptions {
    pub delimiter: u8,
    /// `Some(names)` for a file without a header line: the names of all its columns, in order.
    pub headerless_names: Option<Vec<String>>,
}

/// The values of one extracted column.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnData {
    Int64(Vec<i64>),
    Float32(Vec<f32>),
    Float64(Vec<f64>),
    /// Codes (0 = missing) and the text of each code: `labels[k - 1]` for code k.
    Category {
        codes: Vec<i64>,
        labels: Vec<String>,
    },
}

enum Builder {
    Int64(Vec<i64>),
    Float32(Vec<f32>),
    Float64(Vec<f64>),
    Category {
        codes: Vec<i64>,
        labels: Vec<String>,
        lookup: std::collections::HashMap<Vec<u8>, i64>,
    },
}

impl Builder {
    fn new(kind: ColumnKind) -> Self {
        match kind {
            ColumnKind::Int64 => Builder::Int64(Vec::new()),
            ColumnKind::Float32 => Builder::Float32(Vec::new()),
            ColumnKind::Float64 => Builder::Float64(Vec::new()),
            ColumnKind::Category => Builder::Category {
                codes: Vec::new(),
                labels: Vec::new(),
                lookup: std::collections::HashMap::new(),
            },
        }
    }

    fn push(&mut self, field: &[u8]) -> std::result::Result<(), String> {
        match self {
            Builder::Int64(values) => values.push(parse_int(field)?),
            Builder::Float32(values) => values.push(parse_float(field)? as f32),
            Builder::Float64(values) => values.push(parse_float(field)?),
            Builder::Category {
                codes,
                labels,
                lookup,
            } => {
                if field.is_empty() {
                    codes.push(0);
                } else if let Some(&code) = lookup.get(field) {
                    codes.push(code);
                } else {
                    let code = labels.len() as i64 + 1;
                    labels.push(String::from_utf8_lossy(field).into_owned());
                    lookup.insert(field.to_vec(), code);
                    codes.push(code);
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> ColumnData {
        match self {
            Builder::Int64(values) => ColumnData::Int64(values),
            Builder::Float32(values) => ColumnData::Float32(values),
            Builder::Float64(values) => ColumnData::Float64(values),
            Builder::Category { codes, labels, .. } => ColumnData::Category { codes, labels },
        }
    }
}

fn parse_int(field: &[u8]) -> std::result::Result<i64, String> {
    if field.is_empty() {
        return Err("missing integer value".to_owned());
    }
    let text = std::str::from_utf8(field).map_err(|_| "value is not valid UTF-8".to_owned())?;
    text.trim()
        .parse::<i64>()
        .map_err(|_| format!("expected an integer, got {text:?}"))
}

fn parse_float(field: &[u8]) -> std::result::Result<f64, String> {
    if field.is_empty() {
        return Ok(f64::NAN);
    }
    let text = std::str::from_utf8(field).map_err(|_| "value is not valid UTF-8".to_owned())?;
    text.trim()
        .parse::<f64>()
        .map_err(|_| format!("expected a number, got {text:?}"))
}

fn describe_delimiter(delimiter: u8) -> String {
    match delimiter {
        b'\t' => "tab".to_owned(),
        b',' => "comma".to_owned(),
        other => format!("{:?}", other as char),
    }
}

/// Read the requested columns of a delimited text file.
///
/// Rejects an empty file, a missing column, a header that looks split by another delimiter, a
/// row with a different number of fields than the header (such as a truncated last line) and a
/// value that does not parse, each with the file, line and column.
pub fn read_csv(
    path: &Path,
    options: &CsvOptions,
    columns: &[ColumnSpec],
) -> Result<Vec<ColumnData>> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_csv_from(
        BufReader::with_capacity(1 << 20, file),
        path,
        options,
        columns,
    )
}

/// [`read_csv`] over any reader; `path` only names the source in errors.
pub fn read_csv_from<R: Read>(
    reader: R,
    path: &Path,
    options: &CsvOptions,
    columns: &[ColumnSpec],
) -> Result<Vec<ColumnData>> {
    let parse_error = |line: u64, column: Option<&str>, message: String| Error::Parse {
        path: PathBuf::from(path),
        line,
        column: column.map(str::to_owned),
        message,
    };
    let mut csv_reader = csv::ReaderBuilder::new()
        .delimiter(options.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut record = csv::ByteRecord::new();

    // The header line, or the declared names of a headerless file.
    let mut first_data_line = 1u64;
    let header: Vec<String> = match &options.headerless_names {
        Some(names) => names.clone(),
        None => {
            let has_line = csv_reader
                .read_byte_record(&mut record)
                .map_err(|e| parse_error(1, None, e.to_string()))?;
            if !has_line {
                return Err(parse_error(
                    1,
                    None,
                    "the file is empty; expected a header line".into(),
                ));
            }
            first_data_line = 2;
            record
                .iter()
                .map(|field| String::from_utf8_lossy(field).trim().to_owned())
                .collect()
        }
    };
    if header.len() == 1 && columns.len() > 1 {
        for other in [b',', b'\t', b';', b'|'] {
            if other != options.delimiter && header[0].as_bytes().contains(&other) {
                return Err(parse_error(
                    1,
                    None,
                    format!(
                        "the header has one field but contains the {} character; the file is not \
                         {}-separated, pass the delimiter it uses",
                        describe_delimiter(other),
                        describe_delimiter(options.delimiter)
                    ),
                ));
            }
        }
    }
    let mut positions = Vec::with_capacity(columns.len());
    for spec in columns {
        match header.iter().position(|name| *name == spec.name) {
            Some(position) => positions.push(position),
            None => {
                return Err(Error::ColumnNotFound {
                    path: path.to_path_buf(),
                    column: spec.name.clone(),
                    available: header.clone(),
                })
            }
        }
    }

    let mut builders: Vec<Builder> = columns.iter().map(|spec| Builder::new(spec.kind)).collect();
    let mut line = first_data_line - 1;
    let mut data_rows = 0u64;
    loop {
        line += 1;
        let has_line = csv_reader
            .read_byte_record(&mut record)
            .map_err(|e| parse_error(line, None, e.to_string()))?;
        if !has_line {
            break;
        }
        if record.len() == 1 && record[0].is_empty() {
            continue; // a blank line
        }
        if record.len() != header.len() {
            return Err(parse_error(
                line,
                None,
                format!(
                    "expected {} fields, got {}; the line is truncated or uses another delimiter",
                    header.len(),
                    record.len()
                ),
            ));
        }
        for ((builder, &position), spec) in builders.iter_mut().zip(&positions).zip(columns) {
            builder
                .push(&record[position])
                .map_err(|message| parse_error(line, Some(&spec.name), message))?;
        }
        data_rows += 1;
    }
    if data_rows == 0 {
        return Err(parse_error(
            line.saturating_sub(1).max(1),
            None,
            "the file has no data rows".into(),
        ));
    }
    Ok(builders.into_iter().map(Builder::finish).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: ColumnKind) -> ColumnSpec {
        ColumnSpec {
            name: name.into(),
            kind,
        }
    }

    fn read(text: &str, delimiter: u8, columns: &[ColumnSpec]) -> Result<Vec<ColumnData>> {
        let options = CsvOptions {
            delimiter,
            headerless_names: None,
        };
        read_csv_from(text.as_bytes(), Path::new("log.csv"), &options, columns)
    }

    #[test]
    fn written_file_reads_back() {
        let directory = std::env::temp_dir().join(format!("recrl-csv-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("out.csv");
        let ids = [110378652104i64, -5];
        let values = [1.5f64, f64::NAN];
        let columns = [
            ("id".to_owned(), ColumnValues::Int64(&ids)),
            ("value".to_owned(), ColumnValues::Float64(&values)),
        ];
        write_csv(&path, b',', &columns).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "id,value\n110378652104,1.5\n-5,\n");
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn reads_typed_columns() {
        let columns = [
            spec("user_id", ColumnKind::Int64),
            spec("play", ColumnKind::Float32),
            spec("tab", ColumnKind::Category),
        ];
        let data = read(
            "user_id,play,tab\n6221888200042590280,1.5,a\n2,,\n3,2,a\n",
            b',',
            &columns,
        )
        .unwrap();
        assert_eq!(data[0], ColumnData::Int64(vec![6221888200042590280, 2, 3]));
        match &data[1] {
            ColumnData::Float32(values) => assert!(values[1].is_nan()),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            data[2],
            ColumnData::Category {
                codes: vec![1, 0, 1],
                labels: vec!["a".into()]
            }
        );
    }

    #[test]
    fn truncated_last_line_names_line() {
        let error = read("a,b\n1,2\n3", b',', &[spec("a", ColumnKind::Int64)]).unwrap_err();
        assert!(error.to_string().contains("line 3"), "{error}");
    }

    #[test]
    fn wrong_delimiter_is_named() {
        let columns = [spec("a", ColumnKind::Int64), spec("b", ColumnKind::Int64)];
        let error = read("a\tb\n1\t2\n", b',', &columns).unwrap_err();
        assert!(error.to_string().contains("tab"), "{error}");
    }

    #[test]
    fn missing_column_lists_header() {
        let error = read("a,b\n1,2\n", b',', &[spec("c", ColumnKind::Int64)]).unwrap_err();
        assert!(matches!(error, Error::ColumnNotFound { .. }));
    }

    #[test]
    fn empty_file_is_rejected() {
        let error = read("", b',', &[spec("a", ColumnKind::Int64)]).unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
    }

    #[test]
    fn bad_integer_names_column() {
        let error = read("a\n1\nx\n", b',', &[spec("a", ColumnKind::Int64)]).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("line 3") && message.contains("column a"),
            "{message}"
        );
    }
}

/// Values of one column to write.
#[derive(Clone, Copy, Debug)]
pub enum ColumnValues<'a> {
    Int64(&'a [i64]),
    Float64(&'a [f64]),
}

impl ColumnValues<'_> {
    fn len(&self) -> usize {
        match self {
            ColumnValues::Int64(values) => values.len(),
            ColumnValues::Float64(values) => values.len(),
        }
    }
}

/// Write columns as a delimited text file with a header line, atomically.
///
/// The rows go to a temporary file beside `path`, which is flushed, synced and renamed over
/// `path`, so a crash leaves either the old file or the complete new one. Floats are written in
/// their shortest exact form; NaN is written as an empty field.
pub fn write_csv(path: &Path, delimiter: u8, columns: &[(String, ColumnValues<'_>)]) -> Result<()> {
    use std::io::Write;

    let rows = columns.first().map_or(0, |(_, values)| values.len());
    for (name, values) in columns {
        if values.len() != rows {
            return Err(Error::shape(
                name.as_str(),
                format!("length {rows} like the first column"),
                format!("length {}", values.len()),
            ));
        }
    }
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::invalid("path", format!("{} has no file name", path.display())))?;
    let temporary = path.with_file_name(format!(".{}.tmp", file_name.to_string_lossy()));
    let file = File::create(&temporary).map_err(io_error)?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);

    let header: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    let mut line = header.join(&(delimiter as char).to_string()).into_bytes();
    line.push(b'\n');
    writer.write_all(&line).map_err(io_error)?;
    let mut integers = itoa::Buffer::new();
    let mut floats = ryu::Buffer::new();
    for row in 0..rows {
        line.clear();
        for (position, (_, values)) in columns.iter().enumerate() {
            if position > 0 {
                line.push(delimiter);
            }
            match values {
                ColumnValues::Int64(values) => {
                    line.extend_from_slice(integers.format(values[row]).as_bytes())
                }
                ColumnValues::Float64(values) => {
                    let value = values[row];
                    if value.is_finite() && value == value.trunc() && value.abs() < 1e15 {
                        line.extend_from_slice(integers.format(value as i64).as_bytes());
                    } else if value.is_finite() {
                        line.extend_from_slice(floats.format(value).as_bytes());
                    }
                }
            }
        }
        line.push(b'\n');
        writer.write_all(&line).map_err(io_error)?;
    }
    let file = writer
        .into_inner()
        .map_err(|error| io_error(error.into_error()))?;
    file.sync_all().map_err(io_error)?;
    std::fs::rename(&temporary, path).map_err(io_error)?;
    Ok(())
}
