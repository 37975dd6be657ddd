//! What an XLSX file (a zip package) would unzip to, checked before `calamine` opens it.
//! calamine unzips whatever part it reads without a bound of its own, holds the whole
//! shared-string table in memory, and reserves room for as many shared strings as the table
//! declares: a small upload could otherwise ask for gigabytes, or make an allocation fail
//! and so abort the process.
//!
//! The bound is the sum of the sizes the package declares for its parts: the `zip` crate
//! refuses a part that unzips to more than it declares, so no part calamine reads can grow
//! past it. The shared-string table is read here too, through a reader that stops at its
//! declared size, to count its strings.

use std::io::{BufReader, Read, Seek};

use quick_xml::events::{BytesStart, Event};
use zip::ZipArchive;

/// The most an XLSX file may unzip to, its parts together. A list of 50,000 participants
/// in fifteen columns unzips to 40–60 MB.
pub const MAX_UNZIPPED: u64 = 200 * 1024 * 1024;
/// A part unzipping to more than this many times its compressed size is a zip bomb, not a
/// spreadsheet (they compress 2 to 20 times).
const MAX_RATIO: u64 = 100;
/// Parts up to this size are not asked for their ratio: a small part may compress well.
const RATIO_FROM: u64 = 1024 * 1024;
/// The fewest bytes a shared string takes: `<si/>`.
const MIN_STRING_BYTES: u64 = 5;

/// The most a list may hold: shared strings beyond one a cell are of no use.
#[derive(Debug, Clone, Copy)]
pub struct Cells {
    pub rows: u32,
    pub columns: usize,
}

impl Cells {
    fn count(self) -> u64 {
        u64::from(self.rows) * self.columns as u64
    }
}

/// Refuses a package that would unzip to too much, or whose shared-string table holds (or
/// declares) more strings than `cells` or its size allows. The error says what is wrong
/// with the file.
pub fn check<R: Read + Seek>(reader: R, cells: Cells) -> Result<(), String> {
    let mut archive = ZipArchive::new(reader).map_err(|e| unreadable(&e))?;
    let mut total: u64 = 0;
    let mut shared_strings = Vec::new();
    for index in 0..archive.len() {
        let entry = archive.by_index_data(index).map_err(|e| unreadable(&e))?;
        let size = entry.size();
        total = total.saturating_add(size);
        if total > MAX_UNZIPPED {
            return Err(too_much(format!(
                "unzips to more than {} MB",
                MAX_UNZIPPED / 1024 / 1024
            )));
        }
        if size > RATIO_FROM && size / entry.compressed_size().max(1) > MAX_RATIO {
            return Err(too_much(format!(
                "has a part that unzips to over {MAX_RATIO} times its size, as no spreadsheet does"
            )));
        }
        let name = entry.name().map_err(|e| unreadable(&e))?;
        let name = name.replace('\\', "/").to_ascii_lowercase();
        // Where calamine looks for it: beside the workbook, wherever that is.
        if name == "sharedstrings.xml" || name.ends_with("/sharedstrings.xml") {
            shared_strings.push((index, size));
        }
    }
    for (index, size) in shared_strings {
        let entry = archive.by_index(index).map_err(|e| unreadable(&e))?;
        count_strings(BufReader::new(entry.take(size)), size, cells)?;
    }
    Ok(())
}

fn unreadable(e: &dyn std::fmt::Display) -> String {
    format!("is not a readable XLSX workbook: {e}")
}

fn too_much(message: String) -> String {
    format!("{message}; save it anew, or as CSV")
}

fn too_many_strings(cells: Cells) -> String {
    too_much(format!(
        "holds more shared strings than {} rows of {} columns could use, or than its size allows",
        cells.rows, cells.columns
    ))
}

/// Reads a shared-string table of `size` bytes: the number it declares (which calamine
/// reserves room for) must fit in those bytes, and neither it nor the strings there may
/// outnumber the cells that can be read.
fn count_strings(reader: impl std::io::BufRead, size: u64, cells: Cells) -> Result<(), String> {
    let most = cells.count().min(size / MIN_STRING_BYTES);
    let mut xml = quick_xml::Reader::from_reader(reader);
    xml.config_mut().check_end_names = false;
    let mut buf = Vec::new();
    let mut strings: u64 = 0;
    loop {
        buf.clear();
        match xml.read_event_into(&mut buf).map_err(|e| unreadable(&e))? {
            Event::Start(e) | Event::Empty(e) => {
                let too_many = match e.local_name().as_ref() {
                    "sst" => declared(&e)? > most,
                    "si" => {
                        strings += 1;
                        strings > cells.count()
                    }
                    _ => false,
                };
                if too_many {
                    return Err(too_many_strings(cells));
                }
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// The number of strings a table declares: its `uniqueCount` (the largest, if it gives
/// several, with or without a prefix), 0 when it does not say. A value that is not a
/// number is ignored, as calamine ignores it.
fn declared(sst: &BytesStart<'_>) -> Result<u64, String> {
    let mut most = 0;
    for attribute in sst.attributes().with_checks(false) {
        let attribute = attribute.map_err(|e| unreadable(&e))?;
        if attribute.key.local_name().as_ref() != "uniqueCount" {
            continue;
        }
        let number = match attribute.value.parse::<u64>() {
            Ok(n) => n,
            Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => u64::MAX,
            Err(_) => 0,
        };
        most = most.max(number);
    }
    Ok(most)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(declared: &str, strings: usize) -> Vec<u8> {
        let mut xml = format!("<?xml version=\"1.0\"?><sst count=\"9\" {declared}>");
        for i in 0..strings {
            xml.push_str(&format!("<si><t>{i}</t></si>"));
        }
        xml.push_str("</sst>");
        xml.into_bytes()
    }

    fn counted(xml: &[u8]) -> Result<(), String> {
        let cells = Cells {
            rows: 50_000,
            columns: 200,
        };
        count_strings(xml, xml.len() as u64, cells)
    }

    #[test]
    fn a_table_may_declare_what_its_bytes_can_hold() {
        assert!(counted(&table("uniqueCount=\"3\"", 3)).is_ok());
        assert!(counted(&table("", 3)).is_ok());
        assert!(counted(&table("uniqueCount=\"x\"", 3)).is_ok());
        let xml = table("uniqueCount=\"100\"", 3);
        assert!(xml.len() < 100 * MIN_STRING_BYTES as usize);
        assert!(counted(&xml).is_err());
        assert!(counted(&table("uniqueCount=\"100000000000\"", 3)).is_err());
        assert!(counted(&table("uniqueCount=\"99999999999999999999999\"", 3)).is_err());
        // However the attribute is written.
        for written in [
            "uniqueCount = '100000000000'",
            "uniqueCount=\"3\" uniqueCount=\"100000000000\"",
            "x:uniqueCount=\"100000000000\"",
            "uniqueCount=\"0000100000000000\"",
        ] {
            assert!(counted(&table(written, 3)).is_err(), "{written}");
        }
        let empty = b"<sst uniqueCount=\"100000000000\"/>";
        assert!(counted(empty).is_err());
    }
}
