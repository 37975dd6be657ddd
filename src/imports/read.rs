//! Reading a participants' spreadsheet a row at a time: CSV (UTF-8 with or without a byte
//! order mark, `,` or `;` told apart from the header line) with the `csv` crate, XLSX (the
//! first worksheet) with `calamine`'s streaming cell reader. Neither holds the whole sheet
//! (calamine holds a workbook's shared strings, which `package` bounds before it opens one).
//!
//! What makes the whole file unusable is a [`FileError`] naming the row and column: not CSV
//! or XLSX, no header naming the participant's name and email, broken UTF-8, a formula in a
//! cell, too many rows. Anything wrong with one participant's values is that row's problem,
//! found later (see `rows`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use calamine::{DataRef, Reader, Xlsx};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::package;

/// A file larger than this is refused.
pub const MAX_BYTES: u64 = 20 * 1024 * 1024;
/// A file of this many rows (the header included) or more is refused.
pub const MAX_ROWS: u32 = 50_000;
/// Columns beyond this many are not read.
pub const MAX_COLUMNS: usize = 200;
/// The most a workbook's shared strings are allowed for.
const CELLS: package::Cells = package::Cells {
    rows: MAX_ROWS,
    columns: MAX_COLUMNS,
};

crate::text_enum! {
    /// The format of an imported file.
    pub enum Format {
        Csv => "csv",
        Xlsx => "xlsx",
    }
}

crate::text_enum! {
    /// A participant's detail a column can hold.
    pub enum Field {
        FullName => "full_name",
        Email => "email",
        Organisation => "organisation",
        Position => "position",
        City => "city",
        Phone => "phone",
        /// A category code.
        Category => "category",
        /// Sessions by id or title, separated by `;` or new lines.
        Sessions => "sessions",
        /// `ru` or `en`: the language of mail to the participant.
        Language => "language",
    }
}

impl Field {
    /// The field a header names: its own name, or the names organisers' spreadsheets (and
    /// the export) use, Russian ones included; case, spaces and punctuation do not matter.
    pub fn recognise(header: &str) -> Option<Field> {
        let key: String = header
            .trim()
            .trim_start_matches('\u{feff}')
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect();
        Some(match key.as_str() {
            "fullname"
            | "name"
            | "participant"
            | "фио"
            | "имя"
            | "полноеимя"
            | "участник"
            | "фамилияимяотчество" => Field::FullName,
            "email"
            | "emailaddress"
            | "mail"
            | "почта"
            | "электроннаяпочта"
            | "элпочта"
            | "адресэлектроннойпочты" => Field::Email,
            "organisation"
            | "organization"
            | "company"
            | "организация"
            | "компания"
            | "местоработы" => Field::Organisation,
            "position" | "jobtitle" | "title" | "должность" => Field::Position,
            "city" | "город" | "населённыйпункт" | "населенныйпункт" => {
                Field::City
            }
            "phone" | "telephone" | "телефон" | "номертелефона" => Field::Phone,
            "category" | "категория" => Field::Category,
            "sessions"
            | "sessionids"
            | "session"
            | "сессии"
            | "сессия"
            | "секции"
            | "секция"
            | "мероприятия" => Field::Sessions,
            "language" | "язык" => Field::Language,
            _ => return None,
        })
    }
}

/// One column of the file and the field it is read into.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Column {
    /// The column's header, as in the file.
    pub column: String,
    /// The field it is read into; null: not a participant's detail.
    pub field: Option<Field>,
    /// The key of the event's question it answers; null: no question's.
    #[serde(default)]
    pub question: Option<String>,
}

/// Why a file cannot be imported at all.
#[derive(Debug, Clone)]
pub struct FileError {
    /// The row (1 = the header), when one is to blame.
    pub row: Option<u32>,
    /// The column's header (or letter, before the header is read), when one is to blame.
    pub column: Option<String>,
    pub message: String,
    /// The request member at fault: `file` or `mapping`.
    pub member: String,
}

impl FileError {
    pub fn file(message: impl Into<String>) -> Self {
        FileError {
            row: None,
            column: None,
            message: message.into(),
            member: "file".into(),
        }
    }

    fn at(row: u32, column: Option<String>, message: impl Into<String>) -> Self {
        FileError {
            row: Some(row),
            column,
            message: message.into(),
            member: "file".into(),
        }
    }

    pub fn mapping(column: &str, message: impl Into<String>) -> Self {
        FileError {
            row: Some(1),
            column: Some(column.to_owned()),
            message: message.into(),
            member: format!("mapping.{column}"),
        }
    }
}

/// A spreadsheet's column letter (0 = `A`).
pub fn column_letter(index: usize) -> String {
    let mut n = index + 1;
    let mut letters = Vec::new();
    while n > 0 {
        let rem = (n - 1) % 26;
        letters.push(b'A' + rem as u8);
        n = (n - 1) / 26;
    }
    letters.reverse();
    String::from_utf8(letters).unwrap_or_default()
}

/// An opened file, ready to be read row by row.
pub enum Sheet {
    Csv(CsvRows),
    Xlsx(Box<Xlsx<BufReader<File>>>, String),
}

impl Sheet {
    pub fn format(&self) -> Format {
        match self {
            Sheet::Csv(_) => Format::Csv,
            Sheet::Xlsx(..) => Format::Xlsx,
        }
    }

    /// Calls `visit` with each non-empty row, in order, the header first: its number
    /// (1-based, as a spreadsheet shows it, empty rows counted) and its cells.
    pub fn each_row(
        self,
        visit: &mut dyn FnMut(u32, Vec<String>) -> Result<(), FileError>,
    ) -> Result<(), FileError> {
        match self {
            Sheet::Csv(mut rows) => {
                while let Some((row, cells)) = rows.next_row()? {
                    visit(row, cells)?;
                }
                Ok(())
            }
            Sheet::Xlsx(mut workbook, sheet) => xlsx_rows(&mut workbook, &sheet, visit),
        }
    }
}

/// Opens a spooled upload, telling CSV from XLSX by its first bytes.
pub fn open(file: File) -> Result<Sheet, FileError> {
    let mut reader = BufReader::new(file);
    let start = reader
        .fill_buf()
        .map_err(|e| FileError::file(format!("could not be read: {e}")))?
        .to_vec();
    if start.is_empty() {
        return Err(FileError::file("is empty"));
    }
    if start.starts_with(b"PK\x03\x04") {
        let rewind = |reader: &mut BufReader<File>| {
            reader
                .seek(SeekFrom::Start(0))
                .map(|_| ())
                .map_err(|e| FileError::file(format!("could not be read: {e}")))
        };
        rewind(&mut reader)?;
        package::check(&mut reader, CELLS).map_err(FileError::file)?;
        rewind(&mut reader)?;
        let workbook: Xlsx<_> = Xlsx::new(reader)
            .map_err(|e| FileError::file(format!("is not a readable XLSX workbook: {e}")))?;
        let sheet = workbook
            .sheet_names()
            .first()
            .cloned()
            .ok_or_else(|| FileError::file("has no worksheet"))?;
        return Ok(Sheet::Xlsx(Box::new(workbook), sheet));
    }
    if start.starts_with(b"\xD0\xCF\x11\xE0") {
        return Err(FileError::file(
            "is an Excel 97–2003 workbook (XLS); save it as XLSX or CSV",
        ));
    }
    let head = &start[..start.len().min(8192)];
    if head.contains(&0) || head.starts_with(b"%PDF") {
        return Err(FileError::file("is neither CSV nor XLSX"));
    }
    Ok(Sheet::Csv(CsvRows::open(reader)?))
}

/// The delimiter the header line uses more of, outside quotes: `;` or `,`.
fn delimiter_of(line: &[u8]) -> u8 {
    let (mut commas, mut semicolons, mut quoted) = (0, 0, false);
    for &b in line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => commas += 1,
            b';' if !quoted => semicolons += 1,
            _ => {}
        }
    }
    if semicolons > commas { b';' } else { b',' }
}

pub struct CsvRows {
    reader: csv::Reader<KeepBlankLines<BufReader<File>>>,
    record: csv::ByteRecord,
    row: u32,
}

impl CsvRows {
    fn open(mut reader: BufReader<File>) -> Result<Self, FileError> {
        let io = |e: std::io::Error| FileError::file(format!("could not be read: {e}"));
        let bom = reader.fill_buf().map_err(io)?.starts_with(b"\xEF\xBB\xBF");
        if bom {
            reader.consume(3);
        }
        let offset = if bom { 3 } else { 0 };
        let mut first = Vec::new();
        reader.read_until(b'\n', &mut first).map_err(io)?;
        let delimiter = delimiter_of(&first);
        let mut file = reader.into_inner();
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(KeepBlankLines::new(BufReader::new(file), delimiter));
        Ok(CsvRows {
            reader,
            record: csv::ByteRecord::new(),
            row: 0,
        })
    }
}

impl CsvRows {
    fn next_row(&mut self) -> Result<Option<(u32, Vec<String>)>, FileError> {
        loop {
            let more = self
                .reader
                .read_byte_record(&mut self.record)
                .map_err(|e| FileError::at(self.row + 1, None, format!("is not valid CSV: {e}")))?;
            if !more {
                return Ok(None);
            }
            self.row += 1;
            if self.row >= MAX_ROWS {
                return Err(too_many_rows(self.row));
            }
            let mut cells = Vec::with_capacity(self.record.len());
            for (i, bytes) in self.record.iter().take(MAX_COLUMNS).enumerate() {
                let text = std::str::from_utf8(bytes).map_err(|_| {
                    FileError::at(
                        self.row,
                        Some(column_letter(i)),
                        "is not valid UTF-8 (save the file as «CSV UTF-8»)",
                    )
                })?;
                cells.push(
                    csv_cell(text).map_err(|message| {
                        FileError::at(self.row, Some(column_letter(i)), message)
                    })?,
                );
            }
            if cells.iter().any(|c| !c.trim().is_empty()) {
                return Ok(Some((self.row, cells)));
            }
        }
    }
}

/// Gives each empty line outside quotes a delimiter, so that the CSV reader (which skips
/// empty lines) reads it as an empty record: records then count rows as a spreadsheet
/// shows them.
struct KeepBlankLines<R> {
    inner: R,
    delimiter: u8,
    quoted: bool,
    line_start: bool,
    out: Vec<u8>,
    at: usize,
}

impl<R: Read> KeepBlankLines<R> {
    fn new(inner: R, delimiter: u8) -> Self {
        KeepBlankLines {
            inner,
            delimiter,
            quoted: false,
            line_start: true,
            out: Vec::new(),
            at: 0,
        }
    }
}

impl<R: Read> Read for KeepBlankLines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.out.len() {
            let mut chunk = [0u8; 8192];
            let n = self.inner.read(&mut chunk)?;
            self.out.clear();
            self.at = 0;
            for &b in &chunk[..n] {
                if !self.quoted && self.line_start && (b == b'\n' || b == b'\r') {
                    self.out.push(self.delimiter);
                }
                self.out.push(b);
                if b == b'"' {
                    self.quoted = !self.quoted;
                }
                self.line_start = !self.quoted && b == b'\n';
            }
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn too_many_rows(row: u32) -> FileError {
    FileError::at(
        row,
        None,
        format!(
            "has {MAX_ROWS} rows or more; import at most {} participants at a time",
            MAX_ROWS - 2
        ),
    )
}

/// A CSV cell's text: a formula is refused; a value the export protected from being taken
/// for one (`'=…`, `'+7…`) loses its protecting apostrophe.
fn csv_cell(text: &str) -> Result<String, &'static str> {
    let trimmed = text.trim_start();
    if let Some(rest) = trimmed.strip_prefix('\'')
        && rest
            .trim_start()
            .starts_with(['=', '+', '-', '@', '\t', '\r'])
    {
        return Ok(rest.to_owned());
    }
    if is_formula(trimmed) {
        return Err("holds a formula; enter values only");
    }
    Ok(text.to_owned())
}

/// A cell a spreadsheet would compute: `=…`, `@…`, or `+`/`-` followed by more than a phone
/// number's characters (`+7 (815) 365-00-00` is a value, `+SUM(A1)` and `-2+3*A1` are not).
fn is_formula(text: &str) -> bool {
    match text.chars().next() {
        Some('=' | '@') => true,
        Some('+' | '-') => !text[1..]
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '(' | ')' | '-' | '.')),
        _ => false,
    }
}

fn xlsx_text(value: &DataRef<'_>) -> String {
    match value {
        DataRef::Empty => String::new(),
        DataRef::String(s) => s.clone(),
        DataRef::SharedString(s) => (*s).to_owned(),
        DataRef::Int(i) => i.to_string(),
        // A phone number or an id typed as a number: no `.0`, no exponent.
        DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        DataRef::Float(f) => f.to_string(),
        DataRef::Bool(b) => b.to_string(),
        // A date as YYYY-MM-DD (with its time, when it has one), as a date answer reads it.
        DataRef::DateTime(d) if d.is_datetime() => {
            let (year, month, day, hour, minute, second, _) = d.to_ymd_hms_milli();
            if (hour, minute, second) == (0, 0, 0) {
                format!("{year:04}-{month:02}-{day:02}")
            } else {
                format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}")
            }
        }
        DataRef::DateTime(d) => d.as_f64().to_string(),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::Error(e) => format!("#{e}"),
    }
}

/// The first worksheet's rows, through the streaming reader: a row ends where the next
/// one's first cell is read. A cell with a formula is refused, whatever value it shows.
fn xlsx_rows(
    workbook: &mut Xlsx<BufReader<File>>,
    sheet: &str,
    visit: &mut dyn FnMut(u32, Vec<String>) -> Result<(), FileError>,
) -> Result<(), FileError> {
    let unreadable =
        |e: calamine::XlsxError| FileError::file(format!("is not a readable XLSX workbook: {e}"));
    let mut reader = workbook.worksheet_cells_reader(sheet).map_err(unreadable)?;
    let mut current: Option<(u32, Vec<String>)> = None;
    let mut emit = |row: Option<(u32, Vec<String>)>| -> Result<(), FileError> {
        match row {
            Some((row, cells)) if cells.iter().any(|c| !c.trim().is_empty()) => visit(row, cells),
            _ => Ok(()),
        }
    };
    while let Some(cell) = reader
        .next_cell_with_formula_metadata()
        .map_err(unreadable)?
    {
        let (row, column) = cell.pos;
        let row = row + 1;
        if row >= MAX_ROWS {
            return Err(too_many_rows(row));
        }
        let column = column as usize;
        if column >= MAX_COLUMNS {
            continue;
        }
        if cell.formula.is_some() {
            return Err(FileError::at(
                row,
                Some(column_letter(column)),
                "holds a formula; enter values only (paste as values)",
            ));
        }
        if current.as_ref().is_none_or(|(r, _)| *r != row) {
            emit(current.take())?;
            current = Some((row, Vec::new()));
        }
        if let Some((_, cells)) = current.as_mut() {
            if cells.len() <= column {
                cells.resize(column + 1, String::new());
            }
            cells[column] = xlsx_text(&cell.value);
        }
    }
    emit(current.take())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delimiter_is_the_one_the_header_uses() {
        assert_eq!(delimiter_of(b"full_name;email;city\n"), b';');
        assert_eq!(delimiter_of(b"full_name,email\n"), b',');
        assert_eq!(delimiter_of(b"\"a;b\",email\n"), b',');
    }

    fn csv_rows(text: &str) -> Vec<(u32, Vec<String>)> {
        use std::io::Write;
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut rows = Vec::new();
        open(file)
            .unwrap()
            .each_row(&mut |row, cells| {
                rows.push((row, cells));
                Ok(())
            })
            .unwrap();
        rows
    }

    #[test]
    fn rows_are_numbered_as_a_spreadsheet_shows_them() {
        for text in [
            "\u{feff}a;b\r\n1;2\r\n\"3\r\n\r\n3\";4\r\n\r\n5;6\r\n",
            "a;b\n1;2\n\"3\n\n3\";4\n\n5;6",
        ] {
            let rows = csv_rows(text);
            let numbers: Vec<u32> = rows.iter().map(|(n, _)| *n).collect();
            assert_eq!(numbers, vec![1, 2, 3, 5], "{text:?}");
            assert_eq!(rows[0].1, vec!["a", "b"]);
            assert_eq!(rows[2].1[0].replace('\r', ""), "3\n\n3");
        }
    }

    #[test]
    fn formulas_are_refused_and_phone_numbers_are_not() {
        for formula in [
            "=1+1",
            "@SUM(A1)",
            "+SUM(A1)",
            "-2+3*A1",
            " =HYPERLINK(\"x\")",
        ] {
            assert!(csv_cell(formula).is_err(), "{formula}");
        }
        for value in [
            "+7 (815) 365-00-00",
            "-",
            "Иванова",
            "a=b",
            "8 815 365-00-00",
        ] {
            assert_eq!(csv_cell(value).unwrap(), value);
        }
        assert_eq!(csv_cell("'=1+1").unwrap(), "=1+1");
        assert_eq!(csv_cell("'+7 900").unwrap(), "+7 900");
    }

    #[test]
    fn headers_are_recognised_in_either_language() {
        assert_eq!(Field::recognise("ФИО"), Some(Field::FullName));
        assert_eq!(Field::recognise("\u{feff}E-mail"), Some(Field::Email));
        assert_eq!(Field::recognise("Эл. почта"), Some(Field::Email));
        assert_eq!(Field::recognise("full_name"), Some(Field::FullName));
        assert_eq!(Field::recognise("Организация"), Some(Field::Organisation));
        assert_eq!(Field::recognise("registration_id"), None);
    }

    #[test]
    fn column_letters_go_past_z() {
        assert_eq!(column_letter(0), "A");
        assert_eq!(column_letter(25), "Z");
        assert_eq!(column_letter(26), "AA");
    }

    /// A list as long as can be imported, of fifteen columns, as a spreadsheet program
    /// keeps it (shared strings) and as the export writes it (strings in the cells).
    #[test]
    fn the_longest_list_passes() {
        for inline in [false, true] {
            let mut workbook = rust_xlsxwriter::Workbook::new();
            let sheet = if inline {
                workbook.add_worksheet_with_constant_memory().unwrap()
            } else {
                workbook.add_worksheet()
            };
            for row in 0..MAX_ROWS - 1 {
                let cells = [
                    format!("0192{row:04x}-1111-7abc-8def-{row:012x}"),
                    format!("Иванова-Петрова Мария Александровна {row}"),
                    format!("maria.ivanova.{row}@example-university.ru"),
                    format!("ФГБОУ ВО «Университет номер {}»", row % 500),
                    format!("Старший научный сотрудник {}", row % 100),
                    format!("Город {}", row % 30),
                    format!(
                        "+7 (912) {:03}-{:02}-{:02}",
                        row % 1000,
                        row % 100,
                        row / 100 % 100
                    ),
                    "participant".into(),
                    format!("Пленарное заседание; Секция {}", row % 12),
                    "ru".into(),
                    "confirmed".into(),
                    ["S", "M", "L", "XL"][row as usize % 4].into(),
                    ["да", "нет"][row as usize % 2].into(),
                    format!("Прибуду поездом, вагон {}", row % 20),
                ];
                for (column, text) in cells.iter().enumerate() {
                    sheet.write_string(row, column as u16, text).unwrap();
                }
                sheet.write_number(row, 14, 46000.5 + row as f64).unwrap();
            }
            let bytes = workbook.save_to_buffer().unwrap();
            assert!(bytes.len() < 8 * 1024 * 1024, "{}", bytes.len());
            package::check(std::io::Cursor::new(bytes), CELLS).unwrap();
        }
    }
}
