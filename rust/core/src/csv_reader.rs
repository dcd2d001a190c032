//! A streaming CSV reader that fills typed columns.
//!
//! The file is read in blocks of [`BLOCK_BYTES`], cut at line ends. A block without quote
//! characters is split into pieces that are parsed in parallel and appended in file order. From
//! the first block that contains a quote on, the rest of the file goes through the `csv` crate,
//! which handles quoted fields. Either way memory holds the output columns and one block, whatever
//! the file size, and every failure names the file, the line and the column.

use std::fs::File;
use std::io::{Cursor, Read};
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::memory;

/// Bytes read per block. Memory use beyond the output columns is about twice this.
pub const BLOCK_BYTES: usize = 32 << 20;
/// Smallest piece of a block handed to one thread.
const MIN_PIECE_BYTES: usize = 256 << 10;

/// The type a column is parsed into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// Integers such as ids and millisecond timestamps; a missing value is an error.
    Int64,
    /// Integers from 0 to 255, such as flags and small counts. Anything else is an error.
    UInt8,
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

/// Layout of a delimited file.
#[derive(Clone, Debug)]
pub struct CsvOptions {
    pub delimiter: u8,
    /// `Some(names)` for a file without a header line: the names of all its columns, in order.
    pub headerless_names: Option<Vec<String>>,
    /// Bytes read per block; [`BLOCK_BYTES`] unless a test needs small blocks.
    pub block_bytes: usize,
}

/// The values of one extracted column.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnData {
    Int64(Vec<i64>),
    UInt8(Vec<u8>),
    Float32(Vec<f32>),
    Float64(Vec<f64>),
    /// Codes (0 = missing) and the text of each code: `labels[k - 1]` for code k.
    Category {
        codes: Vec<i64>,
        labels: Vec<String>,
    },
}

/// Values parsed from one piece of a block, appended to the output in file order. Category
/// labels borrow their text from the block, which outlives the piece.
enum Partial<'a> {
    Int64(Vec<i64>),
    UInt8(Vec<u8>),
    Float32(Vec<f32>),
    Float64(Vec<f64>),
    /// Codes local to the piece (0 = missing) and the text of each local code. Labels that are
    /// canonical integers are looked up by value in `numbers`, others by text in `lookup`.
    Category {
        codes: Vec<i64>,
        labels: Vec<&'a [u8]>,
        lookup: FxHashMap<&'a [u8], i64>,
        numbers: NumberCodes,
    },
}

/// The codes of integer labels. Values from 0 up to a limit index a table directly, as ids
/// numbered from 0 (authors, songs) mostly allow. Other values are hashed.
struct NumberCodes {
    /// The code of each value below `table.len()`, 0 where the value has none yet. The table
    /// grows, by doubling, up to `limit` entries.
    table: Vec<i64>,
    limit: usize,
    others: FxHashMap<i64, i64>,
}

impl NumberCodes {
    fn new(limit: usize) -> Self {
        NumberCodes {
            table: Vec::new(),
            limit,
            others: FxHashMap::default(),
        }
    }

    /// Returns the code of `value`, after giving it `next` if it had none.
    #[inline]
    fn code_or_insert(&mut self, value: i64, next: i64) -> i64 {
        match usize::try_from(value) {
            Ok(index) if index < self.limit => {
                if index >= self.table.len() {
                    let size = (index + 1).max(2 * self.table.len()).min(self.limit);
                    self.table.resize(size, 0);
                }
                let code = &mut self.table[index];
                if *code == 0 {
                    *code = next;
                }
                *code
            }
            _ => *self.others.entry(value).or_insert(next),
        }
    }
}

/// Returns the value of `text` when it is an integer written as `i64::to_string` writes it (a
/// '-' for negatives only, no leading zero, at most 18 digits), else None. Integer labels such
/// as ids then hash and compare as numbers, while "007" and "7" stay different labels.
#[inline]
fn canonical_int(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let leading_zero = digits.first() == Some(&b'0') && (digits.len() > 1 || negative);
    if leading_zero {
        return None;
    }
    parse_short_int(text)
}

impl<'a> Partial<'a> {
    fn new(kind: ColumnKind, capacity: usize) -> Self {
        match kind {
            ColumnKind::Int64 => Partial::Int64(Vec::with_capacity(capacity)),
            ColumnKind::UInt8 => Partial::UInt8(Vec::with_capacity(capacity)),
            ColumnKind::Float32 => Partial::Float32(Vec::with_capacity(capacity)),
            ColumnKind::Float64 => Partial::Float64(Vec::with_capacity(capacity)),
            ColumnKind::Category => Partial::Category {
                codes: Vec::with_capacity(capacity),
                labels: Vec::new(),
                lookup: FxHashMap::default(),
                // A table of up to eight entries per row of the piece, at most a million.
                numbers: NumberCodes::new((8 * capacity + 4096).min(1 << 20)),
            },
        }
    }

    fn push(&mut self, field: &'a [u8]) -> std::result::Result<(), String> {
        match self {
            Partial::Int64(values) => values.push(parse_int(field)?),
            Partial::UInt8(values) => values.push(parse_byte(field)?),
            Partial::Float32(values) => values.push(parse_float(field)? as f32),
            Partial::Float64(values) => values.push(parse_float(field)?),
            Partial::Category {
                codes,
                labels,
                lookup,
                numbers,
            } => {
                if field.is_empty() {
                    codes.push(0);
                } else {
                    // One hash per field: the entry is found or made in the same lookup.
                    let next = labels.len() as i64 + 1;
                    let code = match canonical_int(field) {
                        Some(value) => numbers.code_or_insert(value, next),
                        None => *lookup.entry(field).or_insert(next),
                    };
                    if code == next {
                        labels.push(field);
                    }
                    codes.push(code);
                }
            }
        }
        Ok(())
    }
}

/// Destination of one column's values in a piece. A numeric column gets the piece's own run of
/// unfilled output slots, and a category column gets piece-local codes, merged in file order
/// afterwards.
enum Target<'a, 'o> {
    Int64(&'o mut [MaybeUninit<i64>]),
    UInt8(&'o mut [MaybeUninit<u8>]),
    Float32(&'o mut [MaybeUninit<f32>]),
    Float64(&'o mut [MaybeUninit<f64>]),
    Category(Partial<'a>),
}

impl<'a> Target<'a, '_> {
    /// Store the value of `field` for the piece's row `row`.
    #[inline]
    fn put(&mut self, row: usize, field: &'a [u8]) -> std::result::Result<(), String> {
        match self {
            Target::Int64(slots) => {
                slots[row].write(parse_int(field)?);
            }
            Target::UInt8(slots) => {
                slots[row].write(parse_byte(field)?);
            }
            Target::Float32(slots) => {
                slots[row].write(parse_float(field)? as f32);
            }
            Target::Float64(slots) => {
                slots[row].write(parse_float(field)?);
            }
            Target::Category(partial) => partial.push(field)?,
        }
        Ok(())
    }
}

/// An output column being filled, block after block.
enum Builder {
    Int64(Vec<i64>),
    UInt8(Vec<u8>),
    Float32(Vec<f32>),
    Float64(Vec<f64>),
    Category {
        codes: Vec<i64>,
        labels: Vec<String>,
        lookup: FxHashMap<Vec<u8>, i64>,
        numbers: NumberCodes,
    },
}

/// Largest table of integer label codes of a whole column: 2^21 entries, 16 MiB.
const COLUMN_NUMBER_TABLE: usize = 1 << 21;

impl Builder {
    fn new(kind: ColumnKind) -> Self {
        match kind {
            ColumnKind::Int64 => Builder::Int64(Vec::new()),
            ColumnKind::UInt8 => Builder::UInt8(Vec::new()),
            ColumnKind::Float32 => Builder::Float32(Vec::new()),
            ColumnKind::Float64 => Builder::Float64(Vec::new()),
            ColumnKind::Category => Builder::Category {
                codes: Vec::new(),
                labels: Vec::new(),
                lookup: FxHashMap::default(),
                numbers: NumberCodes::new(COLUMN_NUMBER_TABLE),
            },
        }
    }

    fn code_of(
        labels: &mut Vec<String>,
        lookup: &mut FxHashMap<Vec<u8>, i64>,
        numbers: &mut NumberCodes,
        text: &[u8],
    ) -> i64 {
        let next = labels.len() as i64 + 1;
        let code = match canonical_int(text) {
            Some(value) => numbers.code_or_insert(value, next),
            None => match lookup.get(text) {
                Some(&code) => code,
                None => {
                    lookup.insert(text.to_vec(), next);
                    next
                }
            },
        };
        if code == next {
            labels.push(label_text(text));
        }
        code
    }

    fn push(&mut self, field: &[u8]) -> std::result::Result<(), String> {
        match self {
            Builder::Int64(values) => values.push(parse_int(field)?),
            Builder::UInt8(values) => values.push(parse_byte(field)?),
            Builder::Float32(values) => values.push(parse_float(field)? as f32),
            Builder::Float64(values) => values.push(parse_float(field)?),
            Builder::Category {
                codes,
                labels,
                lookup,
                numbers,
            } => codes.push(if field.is_empty() {
                0
            } else {
                Self::code_of(labels, lookup, numbers, field)
            }),
        }
        Ok(())
    }

    /// Append a piece's values. Category codes keep their global order of first appearance,
    /// because pieces arrive in file order and each piece lists its labels in that order.
    fn append(&mut self, partial: Partial) {
        match (self, partial) {
            (Builder::Int64(values), Partial::Int64(more)) => values.extend_from_slice(&more),
            (Builder::UInt8(values), Partial::UInt8(more)) => values.extend_from_slice(&more),
            (Builder::Float32(values), Partial::Float32(more)) => values.extend_from_slice(&more),
            (Builder::Float64(values), Partial::Float64(more)) => values.extend_from_slice(&more),
            (
                Builder::Category {
                    codes,
                    labels,
                    lookup,
                    numbers,
                },
                Partial::Category {
                    codes: local_codes,
                    labels: local_labels,
                    ..
                },
            ) => {
                let mut global = Vec::with_capacity(local_labels.len() + 1);
                global.push(0);
                for text in local_labels {
                    global.push(Self::code_of(labels, lookup, numbers, text));
                }
                codes.extend(local_codes.iter().map(|&code| global[code as usize]));
            }
            _ => unreachable!("a piece is always built with its column's kind"),
        }
    }

    /// Create one target per piece k with room for `piece_rows[k]` rows. Numeric targets are
    /// consecutive runs of the unfilled slots after the stored values, in piece order.
    fn targets<'a, 'o>(
        &'o mut self,
        kind: ColumnKind,
        piece_rows: &[usize],
    ) -> Vec<Target<'a, 'o>> {
        fn split<'o, T>(
            values: &'o mut Vec<T>,
            piece_rows: &[usize],
        ) -> Vec<&'o mut [MaybeUninit<T>]> {
            let total = piece_rows.iter().sum();
            values.reserve(total);
            let mut rest = &mut values.spare_capacity_mut()[..total];
            let mut runs = Vec::with_capacity(piece_rows.len());
            for &rows in piece_rows {
                let (run, tail) = std::mem::take(&mut rest).split_at_mut(rows);
                runs.push(run);
                rest = tail;
            }
            runs
        }
        match self {
            Builder::Int64(values) => split(values, piece_rows)
                .into_iter()
                .map(Target::Int64)
                .collect(),
            Builder::UInt8(values) => split(values, piece_rows)
                .into_iter()
                .map(Target::UInt8)
                .collect(),
            Builder::Float32(values) => split(values, piece_rows)
                .into_iter()
                .map(Target::Float32)
                .collect(),
            Builder::Float64(values) => split(values, piece_rows)
                .into_iter()
                .map(Target::Float64)
                .collect(),
            Builder::Category { .. } => piece_rows
                .iter()
                .map(|&rows| Target::Category(Partial::new(kind, rows)))
                .collect(),
        }
    }

    /// Mark `rows` more slots as filled after every piece wrote its run (numbers only).
    ///
    /// # Safety
    /// The `rows` slots after the current length must all have been written.
    unsafe fn commit(&mut self, rows: usize) {
        match self {
            Builder::Int64(values) => values.set_len(values.len() + rows),
            Builder::UInt8(values) => values.set_len(values.len() + rows),
            Builder::Float32(values) => values.set_len(values.len() + rows),
            Builder::Float64(values) => values.set_len(values.len() + rows),
            Builder::Category { .. } => {}
        }
    }

    fn reserve(&mut self, rows: usize) {
        // A failed reservation is not an error here: the vectors grow as they fill instead.
        fn reserve_huge<T>(values: &mut Vec<T>, rows: usize) {
            if values.try_reserve_exact(rows).is_ok() {
                memory::advise_huge_pages(values.spare_capacity_mut());
            }
        }
        match self {
            Builder::Int64(values) => reserve_huge(values, rows),
            Builder::UInt8(values) => reserve_huge(values, rows),
            Builder::Float32(values) => reserve_huge(values, rows),
            Builder::Float64(values) => reserve_huge(values, rows),
            Builder::Category { codes, .. } => reserve_huge(codes, rows),
        }
    }

    fn finish(self) -> ColumnData {
        match self {
            Builder::Int64(values) => ColumnData::Int64(values),
            Builder::UInt8(values) => ColumnData::UInt8(values),
            Builder::Float32(values) => ColumnData::Float32(values),
            Builder::Float64(values) => ColumnData::Float64(values),
            Builder::Category { codes, labels, .. } => ColumnData::Category { codes, labels },
        }
    }
}

/// Returns the text of a category label: its UTF-8 as it is, and each byte that is not part of
/// valid UTF-8 written as `\xNN`, so that labels of different bytes stay different.
fn label_text(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        for byte in chunk.invalid() {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    }
    text
}

/// Check that `delimiter` can separate fields: a line end or a quote cannot.
pub fn check_delimiter(delimiter: u8) -> Result<()> {
    if matches!(delimiter, b'\n' | b'\r' | b'"') {
        return Err(Error::invalid(
            "delimiter",
            format!(
                "{:?} cannot separate fields, since it ends lines or quotes them; pass the character \
                 between the fields, such as ',' or a tab",
                delimiter as char
            ),
        ));
    }
    Ok(())
}

fn trim(field: &[u8]) -> &[u8] {
    let start = field
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(field.len());
    let end = field
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &field[start..end]
}

/// Parse a plain integer of at most 18 digits, which cannot overflow. Anything else (whitespace,
/// a plus sign, more digits, other characters) gives `None`, and [`parse_int`] handles it.
#[inline]
fn parse_short_int(field: &[u8]) -> Option<i64> {
    let (negative, digits) = match field.first()? {
        b'-' => (true, &field[1..]),
        _ => (false, field),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut value: i64 = 0;
    for &byte in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value * 10 + i64::from(digit);
    }
    Some(if negative { -value } else { value })
}

/// Describe a line with `count` fields where the header has `expected`.
fn field_count_message(expected: usize, count: usize) -> String {
    let cause = if count > expected {
        "the line has extra fields, or a value contains the delimiter unquoted"
    } else {
        "the line is truncated or uses another delimiter"
    };
    format!("expected {expected} fields, got {count}; {cause}")
}

fn parse_int(field: &[u8]) -> std::result::Result<i64, String> {
    if let Some(value) = parse_short_int(field) {
        return Ok(value);
    }
    let text = trim(field);
    let invalid = || {
        format!(
            "expected an integer, got {:?}",
            String::from_utf8_lossy(field)
        )
    };
    if text.is_empty() {
        return Err("missing integer value".to_owned());
    }
    let (negative, digits) = match text[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(invalid());
    }
    // Accumulate as a negative number so that i64::MIN parses without overflow.
    let mut value: i64 = 0;
    for &byte in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return Err(invalid());
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(digit)))
            .ok_or_else(|| format!("{} does not fit in int64", String::from_utf8_lossy(text)))?;
    }
    if negative {
        Ok(value)
    } else {
        value
            .checked_neg()
            .ok_or_else(|| format!("{} does not fit in int64", String::from_utf8_lossy(text)))
    }
}

fn parse_byte(field: &[u8]) -> std::result::Result<u8, String> {
    let value = parse_int(field)?;
    u8::try_from(value).map_err(|_| format!("expected an integer from 0 to 255, got {value}"))
}

fn parse_float(field: &[u8]) -> std::result::Result<f64, String> {
    // Plain integers (counts, sizes, durations in ms) are common in float columns. Below 2^53
    // the conversion is exact, so the result equals what the general parser returns.
    if let Some(value) = parse_short_int(field) {
        if value.unsigned_abs() < 1 << 53 && !(value == 0 && field.first() == Some(&b'-')) {
            return Ok(value as f64);
        }
    }
    let text = trim(field);
    if text.is_empty() {
        return Ok(f64::NAN);
    }
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .ok_or_else(|| {
            format!(
                "expected a number, got {:?}",
                String::from_utf8_lossy(field)
            )
        })
}

fn describe_delimiter(delimiter: u8) -> String {
    match delimiter {
        b'\t' => "tab".to_owned(),
        b',' => "comma".to_owned(),
        other => format!("{:?}", other as char),
    }
}

/// Positions of the requested columns in each line.
struct Layout<'a> {
    delimiter: u8,
    fields: usize,
    /// For each field of a line, the output column it fills, if any.
    targets: Vec<Option<usize>>,
    columns: &'a [ColumnSpec],
}

/// A failure inside a piece: the line within the piece (from 0), the column and the message.
type PieceError = (u64, Option<usize>, String);

/// Iterate over the lines of `piece` without their line ends (`\n` or `\r\n`), empty lines
/// included.
fn lines_of(piece: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', piece).chain(
        // A last line without a line end.
        (piece.last().is_some_and(|&b| b != b'\n')).then_some(piece.len()),
    );
    ends.map(move |end| {
        let line = &piece[start..end];
        start = end + 1;
        line.strip_suffix(b"\r").unwrap_or(line)
    })
}

/// Rows (non-empty lines) of `piece`, as [`Layout::parse_piece`] counts them.
fn count_rows(piece: &[u8]) -> usize {
    lines_of(piece).filter(|line| !line.is_empty()).count()
}

impl Layout<'_> {
    fn field_count_message(&self, line: &[u8]) -> String {
        let count = memchr::memchr_iter(self.delimiter, line).count() + 1;
        field_count_message(self.fields, count)
    }

    /// Parse the lines of `piece` into `outputs`, one target per column with room for exactly
    /// the piece's rows. Returns the number of lines seen, empty ones included.
    ///
    /// The piece is scanned 64 bytes at a time for delimiters and line ends, and the set bits
    /// of those masks, taken in order, end the fields one after the other. Fields are parsed in
    /// line order, so the first bad field of a line is the one reported, before a wrong number
    /// of fields.
    fn parse_piece<'a>(
        &self,
        piece: &'a [u8],
        outputs: &mut [Target<'a, '_>],
    ) -> std::result::Result<u64, PieceError> {
        let last_field = self.fields - 1;
        let mut lines = 0u64;
        let mut row = 0usize;
        let mut line_start = 0usize;
        let mut field_start = 0usize;
        let mut field = 0usize;
        let mut chunk_start = 0;
        while chunk_start < piece.len() {
            let (delimiters, line_ends) = byte_masks(piece, chunk_start, self.delimiter);
            let mut bits = delimiters | line_ends;
            while bits != 0 {
                let offset = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let position = chunk_start + offset;
                if line_ends >> offset & 1 == 0 {
                    // A delimiter ends field `field`. After the last field, it means the line
                    // has too many.
                    self.store(piece, field_start, position, field, row, outputs)
                        .map_err(|(column, message)| (lines, column, message))?;
                    if field == last_field {
                        let end = memchr::memchr(b'\n', &piece[position..])
                            .map_or(piece.len(), |offset| position + offset);
                        let line = &piece[line_start..end];
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        return Err((lines, None, self.field_count_message(line)));
                    }
                    field += 1;
                    field_start = position + 1;
                } else {
                    let filled = self
                        .finish_line(
                            piece,
                            line_start..position,
                            field,
                            field_start,
                            row,
                            outputs,
                        )
                        .map_err(|(column, message)| (lines, column, message))?;
                    row += usize::from(filled);
                    lines += 1;
                    field = 0;
                    line_start = position + 1;
                    field_start = line_start;
                }
            }
            chunk_start += 64;
        }
        // A last line without a line end.
        if line_start < piece.len() {
            self.finish_line(
                piece,
                line_start..piece.len(),
                field,
                field_start,
                row,
                outputs,
            )
            .map_err(|(column, message)| (lines, column, message))?;
            lines += 1;
        }
        Ok(lines)
    }

    /// Parse the last field of the line `piece[line]` (without its line end), which started at
    /// `field_start` as field number `field`, and check the line's field count. Returns false
    /// for an empty line, which has no row.
    fn finish_line<'a>(
        &self,
        piece: &'a [u8],
        line: std::ops::Range<usize>,
        field: usize,
        field_start: usize,
        row: usize,
        outputs: &mut [Target<'a, '_>],
    ) -> std::result::Result<bool, (Option<usize>, String)> {
        let line_start = line.start;
        let text = &piece[line];
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            return Ok(false);
        }
        let field_end = line_start + text.len();
        // The fields before this one were parsed without errors, and so is this one before a
        // short line is reported.
        self.store(piece, field_start, field_end, field, row, outputs)?;
        if field != self.fields - 1 {
            return Err((None, self.field_count_message(text)));
        }
        Ok(true)
    }

    /// Parse the field `piece[start..end]`, field number `field` of its line, into row `row`
    /// of its column, if it is read at all.
    #[inline(always)]
    fn store<'a>(
        &self,
        piece: &'a [u8],
        start: usize,
        end: usize,
        field: usize,
        row: usize,
        outputs: &mut [Target<'a, '_>],
    ) -> std::result::Result<(), (Option<usize>, String)> {
        let Some(column) = self.targets[field] else {
            return Ok(());
        };
        match &mut outputs[column] {
            Target::Int64(slots) => {
                if let Some(value) = digits_at(piece, start, end) {
                    slots[row].write(value);
                    return Ok(());
                }
            }
            Target::UInt8(slots) => {
                if let Some(value) = digits_at(piece, start, end).and_then(|v| u8::try_from(v).ok())
                {
                    slots[row].write(value);
                    return Ok(());
                }
            }
            _ => {}
        }
        outputs[column]
            .put(row, &piece[start..end])
            .map_err(|message| (Some(column), message))
    }
}

/// Returns the masks of delimiters and of line ends in the 64 bytes of `piece` from `start`
/// (fewer at the end): bit i is set where byte `start + i` is one.
#[inline]
fn byte_masks(piece: &[u8], start: usize, delimiter: u8) -> (u64, u64) {
    let rest = &piece[start..];
    if let Some(chunk) = rest.first_chunk::<64>() {
        return chunk_masks(chunk, delimiter);
    }
    let mut padded = [0u8; 64];
    padded[..rest.len()].copy_from_slice(rest);
    // Zero bytes are neither a delimiter nor a line end, unless zero is the delimiter.
    let valid = (1u64 << rest.len()) - 1;
    let (delimiters, line_ends) = chunk_masks(&padded, delimiter);
    (delimiters & valid, line_ends & valid)
}

/// Computes [`byte_masks`] of exactly 64 bytes with four 16-byte comparisons and byte-mask moves
/// (SSE2, which every x86-64 processor has).
#[cfg(target_arch = "x86_64")]
#[inline]
fn chunk_masks(chunk: &[u8; 64], delimiter: u8) -> (u64, u64) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86-64 baseline, and each load reads 16 bytes inside `chunk`.
    unsafe {
        let delimiters = _mm_set1_epi8(delimiter as i8);
        let line_ends = _mm_set1_epi8(b'\n' as i8);
        let mut masks = (0u64, 0u64);
        for part in 0..4 {
            let bytes = _mm_loadu_si128(chunk.as_ptr().add(16 * part).cast::<__m128i>());
            let found = _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, delimiters)) as u16;
            masks.0 |= u64::from(found) << (16 * part);
            let found = _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, line_ends)) as u16;
            masks.1 |= u64::from(found) << (16 * part);
        }
        masks
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn chunk_masks(chunk: &[u8; 64], delimiter: u8) -> (u64, u64) {
    let mut masks = (0u64, 0u64);
    for (i, &byte) in chunk.iter().enumerate() {
        masks.0 |= u64::from(byte == delimiter) << i;
        masks.1 |= u64::from(byte == b'\n') << i;
    }
    masks
}

/// Read `piece[start..end]` as an optional minus and 1 to 18 digits, as [`parse_short_int`]
/// does. Up to 16 digits with 16 bytes of the piece from `start` are read eight at a time.
#[inline(always)]
fn digits_at(piece: &[u8], start: usize, end: usize) -> Option<i64> {
    // Flags and counts are mostly one digit.
    if end == start + 1 {
        let digit = piece[start].wrapping_sub(b'0');
        return (digit <= 9).then_some(i64::from(digit));
    }
    let negative = piece.get(start) == Some(&b'-');
    let first = start + usize::from(negative);
    let length = end.checked_sub(first)?;
    let value = match piece.get(first..).and_then(|rest| rest.first_chunk::<16>()) {
        Some(bytes) if (1..=16).contains(&length) => {
            let (high, low) = bytes.split_at(8);
            let high_length = length.min(8);
            let high = eight_digits(high.try_into().ok()?, high_length)?;
            if length > 8 {
                let low = eight_digits(low.try_into().ok()?, length - 8)?;
                high * POWERS_OF_TEN[length - 8] + low
            } else {
                high
            }
        }
        _ => return parse_short_int(&piece[start..end]),
    };
    Some(if negative { -value } else { value })
}

/// 10^k for k from 0 to 8.
const POWERS_OF_TEN: [i64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// Returns the value of the first `length` (1 to 8) bytes of `bytes`, if they are all digits.
///
/// A byte is an ASCII digit when it lies in 0x30..=0x39. Adding 0x50 to a byte below 0x30, or
/// 0x46 to one above 0x39, sets its top bit, and no sum carries into the next byte once the top
/// bits are masked off. Little-endian order puts the first character in the lowest byte, so the
/// first non-digit is the lowest flagged byte. Shifted to the top of the word behind zeros, the
/// digits are then combined in pairs, fours and eights by three multiplications.
#[inline]
fn eight_digits(bytes: [u8; 8], length: usize) -> Option<i64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const TOP: u64 = 0x8080_8080_8080_8080;
    let chunk = u64::from_le_bytes(bytes);
    let low = chunk & !TOP;
    let non_digit = (!(low + 0x50 * ONES) | (low + 0x46 * ONES) | chunk) & TOP;
    if (non_digit.trailing_zeros() / 8) < length as u32 {
        return None;
    }
    let digits = chunk.wrapping_sub(0x30 * ONES) << (8 * (8 - length));
    let pairs = (digits & 0x0f0f_0f0f_0f0f_0f0f).wrapping_mul(2561) >> 8;
    let fours = (pairs & 0x00ff_00ff_00ff_00ff).wrapping_mul(6_553_601) >> 16;
    let value = (fours & 0x0000_ffff_0000_ffff).wrapping_mul(42_949_672_960_001) >> 32;
    Some(value as i64)
}

/// Cut `block` into about `pieces` parts that each end at a line end.
fn split_at_lines(block: &[u8], pieces: usize) -> Vec<&[u8]> {
    let target = (block.len() / pieces.max(1)).max(MIN_PIECE_BYTES);
    let mut parts = Vec::new();
    let mut rest = block;
    while rest.len() > target {
        match rest[target..].iter().position(|&b| b == b'\n') {
            Some(offset) => {
                let (head, tail) = rest.split_at(target + offset + 1);
                parts.push(head);
                rest = tail;
            }
            None => break,
        }
    }
    if !rest.is_empty() {
        parts.push(rest);
    }
    parts
}

/// Read the requested columns of a delimited text file.
///
/// Rejects, with the file, line and column:
/// - an empty file or a missing column;
/// - a header that looks split by another delimiter;
/// - a row whose field count differs from the header's, such as a truncated last line;
/// - a value that does not parse.
pub fn read_csv(
    path: &Path,
    options: &CsvOptions,
    columns: &[ColumnSpec],
) -> Result<Vec<ColumnData>> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let size = file.metadata().ok().map(|metadata| metadata.len());
    read_csv_sized(file, path, options, columns, size)
}

/// [`read_csv`] over any reader; `path` only names the source in errors.
pub fn read_csv_from<R: Read>(
    reader: R,
    path: &Path,
    options: &CsvOptions,
    columns: &[ColumnSpec],
) -> Result<Vec<ColumnData>> {
    read_csv_sized(reader, path, options, columns, None)
}

/// [`read_csv_from`] with the total size of the input in bytes, when known, used to size the
/// output columns once instead of growing them block after block.
fn read_csv_sized<R: Read>(
    mut reader: R,
    path: &Path,
    options: &CsvOptions,
    columns: &[ColumnSpec],
    total_bytes: Option<u64>,
) -> Result<Vec<ColumnData>> {
    check_delimiter(options.delimiter)?;
    let parse_error = |line: u64, column: Option<&str>, message: String| Error::Parse {
        path: PathBuf::from(path),
        line,
        column: column.map(str::to_owned),
        message,
    };
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };

    // The first block, and the header line at its start unless the names are declared.
    let block_bytes = options.block_bytes.max(1);
    let mut block = Vec::with_capacity(block_bytes);
    let mut at_end = fill_block(&mut reader, &mut block, block_bytes).map_err(io_error)?;
    let mut consumed = 0usize;
    let mut next_line = 1u64;
    let header: Vec<String> = match &options.headerless_names {
        Some(names) => names.clone(),
        None => {
            if block.is_empty() {
                return Err(parse_error(
                    1,
                    None,
                    "the file is empty; expected a header line".into(),
                ));
            }
            // The whole header line must be in the block, however long it is.
            while !at_end && !block.contains(&b'\n') {
                let size = block.len() + block_bytes;
                at_end = fill_block(&mut reader, &mut block, size).map_err(io_error)?;
            }
            let end = block
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(block.len());
            let line = &block[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
            consumed = (end + 1).min(block.len());
            next_line = 2;
            line.split(|&b| b == options.delimiter)
                .map(|field| {
                    let field = trim(field);
                    let field = field
                        .strip_prefix(b"\"")
                        .and_then(|f| f.strip_suffix(b"\""))
                        .unwrap_or(field);
                    String::from_utf8_lossy(field).into_owned()
                })
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
    let mut targets = vec![None; header.len()];
    for (column, spec) in columns.iter().enumerate() {
        let mut positions = (0..header.len()).filter(|&position| header[position] == spec.name);
        match (positions.next(), positions.next()) {
            (Some(first), Some(second)) => {
                let message = format!(
                    "fields {} and {} are both named {:?}, so the column is ambiguous; rename one",
                    first + 1,
                    second + 1,
                    spec.name
                );
                return Err(match options.headerless_names {
                    Some(_) => Error::invalid("headerless_names", message),
                    None => parse_error(1, Some(&spec.name), message),
                });
            }
            // Each column needs exactly one field: every output slot is written once per row.
            (Some(position), None) if targets[position].is_some() => {
                return Err(Error::invalid(
                    "columns",
                    format!("column {:?} is requested twice; request it once", spec.name),
                ))
            }
            (Some(position), None) => targets[position] = Some(column),
            (None, _) => {
                return Err(Error::ColumnNotFound {
                    path: path.to_path_buf(),
                    column: spec.name.clone(),
                    available: header.clone(),
                })
            }
        }
    }
    let layout = Layout {
        delimiter: options.delimiter,
        fields: header.len(),
        targets,
        columns,
    };

    let mut builders: Vec<Builder> = columns.iter().map(|spec| Builder::new(spec.kind)).collect();
    if let Some(total) = total_bytes {
        // Rows estimated from the line length of the first block, with a margin; a wrong guess
        // only costs a reallocation.
        let sample = &block[consumed..];
        let sample_lines = sample.iter().filter(|&&b| b == b'\n').count();
        if sample_lines > 0 {
            let bytes_per_line = sample.len() as f64 / sample_lines as f64;
            let estimate = (total as f64 / bytes_per_line * 1.02) as usize + 16;
            for builder in &mut builders {
                builder.reserve(estimate);
            }
        }
    }
    let mut rows = 0u64;
    loop {
        // Parse the complete lines of the block; keep a trailing partial line for the next one.
        let usable = if at_end {
            block.len()
        } else {
            block
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(consumed, |p| p + 1)
                .max(consumed)
        };
        if usable == consumed && !at_end {
            // No line end in the whole block: one line is longer than a block, so read on.
            let size = block.len() + block_bytes;
            at_end = fill_block(&mut reader, &mut block, size).map_err(io_error)?;
            continue;
        }
        let lines = &block[consumed..usable];
        if lines.contains(&b'"') {
            // Quoted fields may hold delimiters or line ends: hand the rest to the csv crate.
            let rest = Cursor::new(block[consumed..].to_vec()).chain(reader);
            rows += parse_sequential(rest, next_line, &layout, &mut builders, &parse_error)?;
            break;
        }
        let threads = rayon::current_num_threads();
        let pieces = split_at_lines(lines, threads * 4);
        let piece_rows: Vec<usize> = pieces.par_iter().map(|piece| count_rows(piece)).collect();
        let block_rows: usize = piece_rows.iter().sum();

        // Each piece parses straight into its own run of every numeric output column.
        let mut per_piece: Vec<Vec<Target<'_, '_>>> = pieces
            .iter()
            .map(|_| Vec::with_capacity(builders.len()))
            .collect();
        for (builder, spec) in builders.iter_mut().zip(columns) {
            for (piece, target) in per_piece
                .iter_mut()
                .zip(builder.targets(spec.kind, &piece_rows))
            {
                piece.push(target);
            }
        }
        let results: Vec<_> = pieces
            .par_iter()
            .zip(per_piece.par_iter_mut())
            .map(|(piece, outputs)| layout.parse_piece(piece, outputs))
            .collect();
        // Category codes of each column, piece by piece in file order.
        let mut categories: Vec<Vec<Partial<'_>>> = columns.iter().map(|_| Vec::new()).collect();
        for (outputs, result) in per_piece.into_iter().zip(results) {
            match result {
                Ok(piece_lines) => next_line += piece_lines,
                Err((line, column, message)) => {
                    let column = column.map(|c| columns[c].name.as_str());
                    return Err(parse_error(next_line + line, column, message));
                }
            }
            for (column, target) in categories.iter_mut().zip(outputs) {
                if let Target::Category(partial) = target {
                    column.push(partial);
                }
            }
        }
        rows += block_rows as u64;
        builders
            .par_iter_mut()
            .zip(categories)
            .for_each(|(builder, partials)| {
                // SAFETY: every piece succeeded, and a piece that parses without an error writes
                // each numeric column once per row (a row with a missing field is an error),
                // so all `block_rows` slots handed out above are written.
                unsafe { builder.commit(block_rows) };
                for partial in partials {
                    builder.append(partial);
                }
            });
        if at_end {
            break;
        }
        block.drain(..usable);
        consumed = 0;
        at_end = fill_block(&mut reader, &mut block, block_bytes).map_err(io_error)?;
    }
    if rows == 0 {
        return Err(parse_error(
            next_line.saturating_sub(1).max(1),
            None,
            "the file has no data rows".into(),
        ));
    }
    Ok(builders.into_iter().map(Builder::finish).collect())
}

/// Top `block` up to `size` bytes; returns true once the reader is exhausted.
///
/// Reads straight into the block's spare capacity (`read_to_end` on a `File` does not zero it
/// first), so a block costs one copy from the page cache and nothing more.
fn fill_block<R: Read>(reader: &mut R, block: &mut Vec<u8>, size: usize) -> std::io::Result<bool> {
    let room = size.saturating_sub(block.len());
    if room == 0 {
        return Ok(false);
    }
    block.reserve(room);
    let read = reader.by_ref().take(room as u64).read_to_end(block)?;
    Ok(read < room)
}

/// Parse the rest of a file with the `csv` crate, which understands quoted fields.
fn parse_sequential<R: Read>(
    reader: R,
    first_line: u64,
    layout: &Layout<'_>,
    builders: &mut [Builder],
    parse_error: &dyn Fn(u64, Option<&str>, String) -> Error,
) -> Result<u64> {
    let mut csv_reader = csv::ReaderBuilder::new()
        .delimiter(layout.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut record = csv::ByteRecord::new();
    let mut rows = 0u64;
    loop {
        let line = first_line + csv_reader.position().line().saturating_sub(1);
        let has_line = csv_reader
            .read_byte_record(&mut record)
            .map_err(|e| parse_error(line, None, e.to_string()))?;
        if !has_line {
            break;
        }
        let line = first_line + record.position().map_or(0, |p| p.line() - 1);
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        if record.len() != layout.fields {
            return Err(parse_error(
                line,
                None,
                field_count_message(layout.fields, record.len()),
            ));
        }
        for (position, field) in record.iter().enumerate() {
            if let Some(column) = layout.targets[position] {
                builders[column].push(field).map_err(|message| {
                    parse_error(line, Some(&layout.columns[column].name), message)
                })?;
            }
        }
        rows += 1;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_columns_read_integers_exactly() {
        for text in [
            "0",
            "-0",
            "007",
            "-42",
            "9007199254740991",
            "9007199254740993",
            "-9007199254740993",
            "123456789012345678",
        ] {
            let general: f64 = text.parse().unwrap();
            let parsed = parse_float(text.as_bytes()).unwrap();
            assert_eq!(parsed.to_bits(), general.to_bits(), "{text}");
        }
    }

    #[test]
    fn field_digits_match_the_field_parser() {
        let fields: [&[u8]; 14] = [
            b"0",
            b"-0",
            b"007",
            b"-42",
            b"123456789012345678",
            b"-123456789012345678",
            b"1234567890123456789",
            b"9223372036854775807",
            b"",
            b"-",
            b"12a",
            b" 12",
            b"+5",
            b"1.5",
        ];
        for field in fields {
            // Short and long tails decide whether the eight-byte reads have room.
            for tail in [&b""[..], b",9", b",12345678901234567"] {
                let line = [field, tail].concat();
                let read = digits_at(&line, 0, field.len());
                assert_eq!(read, parse_short_int(field), "{line:?}");
                if let Some(value) = read {
                    assert_eq!(parse_int(field), Ok(value), "{line:?}");
                }
            }
        }
    }

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
            block_bytes: BLOCK_BYTES,
        };
        let result = read_csv_from(text.as_bytes(), Path::new("log.csv"), &options, columns);
        // Tiny blocks cut lines and quoted fields at every position: the result must not change.
        let sizes: &[usize] = if text.len() < 4096 {
            &[1, 7, 64]
        } else {
            &[4096, 100_003]
        };
        for &block_bytes in sizes {
            let small = CsvOptions {
                block_bytes,
                ..options.clone()
            };
            let again = read_csv_from(text.as_bytes(), Path::new("log.csv"), &small, columns);
            match (&result, &again) {
                (Ok(expected), Ok(actual)) => {
                    // Compared as text because NaN never equals itself.
                    let same = format!("{expected:?}") == format!("{actual:?}");
                    assert!(same, "block {block_bytes}: the columns differ");
                }
                (Err(expected), Err(actual)) => {
                    assert_eq!(
                        expected.to_string(),
                        actual.to_string(),
                        "block {block_bytes}"
                    )
                }
                (Ok(_), Err(error)) | (Err(error), Ok(_)) => {
                    panic!("block {block_bytes}: only one read failed: {error}")
                }
            }
        }
        result
    }

    #[test]
    fn byte_columns_take_0_to_255() {
        let columns = [spec("flag", ColumnKind::UInt8)];
        let data = read("flag\n0\n255\n007\n", b',', &columns).unwrap();
        assert_eq!(data[0], ColumnData::UInt8(vec![0, 255, 7]));
        // The same through the csv crate, once a quote appears.
        let data = read("flag\n1\n\"2\"\n", b',', &columns).unwrap();
        assert_eq!(data[0], ColumnData::UInt8(vec![1, 2]));
        for bad in ["256", "-1", "x"] {
            let error = read(&format!("flag\n1\n{bad}\n"), b',', &columns).unwrap_err();
            let text = error.to_string();
            assert!(text.contains("line 3"), "{text}");
            assert!(text.contains("flag"), "{text}");
        }
    }

    #[test]
    fn quoted_fields_switch_to_csv_crate() {
        let columns = [
            spec("id", ColumnKind::Int64),
            spec("range", ColumnKind::Category),
        ];
        let data = read("id,range\n1,a\n2,\"[1,5)\"\n3,a\n", b',', &columns).unwrap();
        assert_eq!(data[0], ColumnData::Int64(vec![1, 2, 3]));
        assert_eq!(
            data[1],
            ColumnData::Category {
                codes: vec![1, 2, 1],
                labels: vec!["a".into(), "[1,5)".into()]
            }
        );
    }

    // A plain digit loop, the reference for the eight-byte reads of `digits_at`.
    fn digit_loop(field: &[u8]) -> Option<i64> {
        let digits = field.strip_prefix(b"-").unwrap_or(field);
        let plain = (1..=18).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit);
        plain.then(|| std::str::from_utf8(field).unwrap().parse().unwrap())
    }

    #[test]
    fn eight_byte_integers_match_the_digit_loop() {
        let check = |line: &[u8], start: usize, end: usize| {
            assert_eq!(
                digits_at(line, start, end),
                digit_loop(&line[start..end]),
                "{line:?} from {start} to {end}"
            );
        };
        // Every length of every leading digit, with leading zeros and a tail after the comma.
        for value in (0..10_000_000u64)
            .step_by(997)
            .chain([9_999_999, 1_000_000, 10])
        {
            for zeros in 0..3 {
                let number = format!("{}{value}", "0".repeat(zeros));
                let line = format!("x,{number},123456789");
                check(line.as_bytes(), 2, 2 + number.len());
                let line = format!("x,{number}{number},1");
                check(line.as_bytes(), 2, 2 + 2 * number.len());
            }
        }
        // Random bytes around the boundaries of the digit range ('/' and ':') and past ASCII,
        // read over every field of up to 20 bytes.
        let alphabet = [
            b'0', b'5', b'9', b'/', b':', b',', b'-', b' ', 0x80, 0xb0, 0xff, b'\t',
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            let line: Vec<u8> = (0..24)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    if state.is_multiple_of(3) {
                        alphabet[(state % alphabet.len() as u64) as usize]
                    } else {
                        b'0' + (state % 10) as u8
                    }
                })
                .collect();
            let start = (state % 4) as usize;
            for end in start..=line.len().min(start + 20) {
                check(&line, start, end);
            }
        }
    }

    #[test]
    fn number_codes_match_a_hash_map() {
        // Values below, at and above the table's limit, negative ones and huge ones.
        let mut codes = NumberCodes::new(100);
        let mut reference: FxHashMap<i64, i64> = FxHashMap::default();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let value = match state % 4 {
                0 => (state >> 8) as i64 % 120,
                1 => -((state >> 8) as i64 % 5),
                2 => (state >> 1) as i64,
                _ => 99 + (state >> 8) as i64 % 3,
            };
            let next = reference.len() as i64 + 1;
            let expected = *reference.entry(value).or_insert(next);
            assert_eq!(codes.code_or_insert(value, next), expected, "value {value}");
        }
        assert!(codes.table.len() <= 100);
    }

    #[test]
    fn canonical_integers_are_the_ones_to_string_writes() {
        for value in [
            0,
            7,
            -5,
            10,
            123_456_789_012_345_678,
            -999_999_999_999_999_999,
        ] {
            assert_eq!(canonical_int(value.to_string().as_bytes()), Some(value));
        }
        for text in [
            "",
            "-",
            "007",
            "-0",
            "+5",
            " 5",
            "5 ",
            "1e3",
            "1.0",
            "1_000",
            "x",
            "1234567890123456789",
        ] {
            assert_eq!(canonical_int(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn integer_and_text_labels_share_one_code_sequence() {
        // "7" and "007" are different labels. Numbers and text share first-seen order.
        let mut text = String::from("id,label\n");
        let labels = [
            "7",
            "007",
            "b",
            "-0",
            "0",
            "7",
            "-5",
            "b",
            "1234567890123456789",
            "007",
        ];
        for (row, label) in labels.iter().cycle().take(150_000).enumerate() {
            text.push_str(&format!("{row},{label}\n"));
        }
        let columns = [
            spec("id", ColumnKind::Int64),
            spec("label", ColumnKind::Category),
        ];
        let data = read(&text, b',', &columns).unwrap();
        let ColumnData::Category {
            codes,
            labels: read_labels,
        } = &data[1]
        else {
            panic!("expected a category column, got {:?}", data[1]);
        };
        let expected_labels = ["7", "007", "b", "-0", "0", "-5", "1234567890123456789"];
        assert_eq!(read_labels, &expected_labels.map(String::from));
        let expected_codes = [1, 2, 3, 4, 5, 1, 6, 3, 7, 2];
        for (row, &code) in codes.iter().enumerate() {
            assert_eq!(code, expected_codes[row % labels.len()], "row {row}");
        }
    }

    #[test]
    fn error_after_quote_names_line() {
        let error = read(
            "id,r\n1,\"a\"\n2,b\nx,c\n",
            b',',
            &[spec("id", ColumnKind::Int64)],
        )
        .unwrap_err();
        assert!(error.to_string().contains("line 4"), "{error}");
    }

    #[test]
    fn many_pieces_keep_order_and_lines() {
        // Enough rows for several parallel pieces; the bad value sits on a known line.
        let mut text = String::from("id,label\n");
        for row in 0..200_000 {
            text.push_str(&format!("{row},l{}\r\n", row % 7));
        }
        let columns = [
            spec("id", ColumnKind::Int64),
            spec("label", ColumnKind::Category),
        ];
        let data = read(&text, b',', &columns).unwrap();
        match (&data[0], &data[1]) {
            (ColumnData::Int64(ids), ColumnData::Category { codes, labels }) => {
                assert!(ids.iter().enumerate().all(|(i, &id)| id == i as i64));
                assert_eq!(labels[0], "l0");
                assert_eq!(codes[8], 2);
            }
            other => panic!("unexpected {other:?}"),
        }
        text.push_str("oops,l1\n");
        let error = read(&text, b',', &columns).unwrap_err();
        assert!(error.to_string().contains("line 200002"), "{error}");
    }

    #[test]
    fn blank_lines_are_skipped_but_counted() {
        // Blank lines, with and without a carriage return, spread over many pieces.
        let mut text = String::from("id,x,label\n");
        for row in 0..150_000 {
            text.push_str(&format!("{row},{}.5,c{}\n", row % 3, row % 5));
            if row % 9_999 == 0 {
                text.push_str(if row % 2 == 0 { "\n" } else { "\r\n" });
            }
        }
        let columns = [
            spec("id", ColumnKind::Int64),
            spec("x", ColumnKind::Float64),
            spec("label", ColumnKind::Category),
        ];
        let data = read(&text, b',', &columns).unwrap();
        match (&data[0], &data[1], &data[2]) {
            (
                ColumnData::Int64(ids),
                ColumnData::Float64(x),
                ColumnData::Category { codes, .. },
            ) => {
                assert_eq!(ids.len(), 150_000);
                assert!(ids.iter().enumerate().all(|(i, &id)| id == i as i64));
                assert_eq!(x[149_999], 2.5);
                assert_eq!(codes[7], 3);
            }
            other => panic!("unexpected {other:?}"),
        }
        // 150,000 rows and 16 blank lines after the header: the bad row is on line 150,018.
        text.push_str("1,bad,c1\n");
        let error = read(&text, b',', &columns).unwrap_err().to_string();
        assert!(
            error.contains("line 150018") && error.contains("column x"),
            "{error}"
        );
    }

    #[test]
    fn duplicate_column_is_rejected() {
        let columns = [spec("a", ColumnKind::Int64), spec("a", ColumnKind::Float64)];
        let error = read("a,b\n1,2\n", b',', &columns).unwrap_err();
        assert!(error.to_string().contains("requested twice"), "{error}");
    }

    #[test]
    fn extreme_integers_parse() {
        let text = "a\n-9223372036854775808\n9223372036854775807\n";
        let data = read(text, b',', &[spec("a", ColumnKind::Int64)]).unwrap();
        assert_eq!(data[0], ColumnData::Int64(vec![i64::MIN, i64::MAX]));
        let error = read(
            "a\n9223372036854775808\n",
            b',',
            &[spec("a", ColumnKind::Int64)],
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("does not fit in int64"),
            "{error}"
        );
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
