//! CSV that spreadsheets read as data: cells that would start a formula are neutralised and
//! every cell is quoted (the OWASP guidance on CSV injection).

use std::borrow::Cow;

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::CodePointSetData;
use icu_properties::props::DefaultIgnorableCodePoint;

/// A cell as text a spreadsheet will not run as a formula: prefixed with `'` when it starts
/// with `=`, `+`, `-`, `@`, a tab or a line break, also when white space or invisible
/// characters (zero-width spaces, byte order marks, direction marks, soft hyphens...) come
/// first, and also when the sign is a compatibility form (full-width `＝`, small `﹢`, the minus
/// sign `−`...) that spreadsheets may read as the ASCII one.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    if starts_formula(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

fn starts_formula(cell: &str) -> bool {
    if cell.starts_with(['\t', '\r', '\n']) {
        return true;
    }
    let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
    let Some(first) = cell
        .chars()
        .find(|&c| !(c.is_whitespace() || c.is_control() || ignorable.contains(c)))
    else {
        return false;
    };
    let mut buffer = [0; 4];
    let first = ComposingNormalizerBorrowed::new_nfkc().normalize(first.encode_utf8(&mut buffer));
    first.starts_with(['=', '+', '-', '@', '\u{2212}'])
}

/// A CSV writer with `delimiter` that quotes every cell, so that neither delimiter (nor a
/// quote or line break) inside a cell can start a new cell, whichever one a spreadsheet
/// guesses.
pub fn writer(delimiter: u8) -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .delimiter(delimiter)
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(Vec::with_capacity(256 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neutralised(cell: &str) -> bool {
        neutralise(cell) == format!("'{cell}")
    }

    #[test]
    fn cells_starting_a_formula_get_a_quote() {
        for cell in ["=1+1", "+7 900", "-2", "@SUM(A1)", "\tx", "\rx", "\nx"] {
            assert!(neutralised(cell), "{cell:?}");
        }
    }

    #[test]
    fn white_space_before_a_formula_does_not_hide_it() {
        for cell in [
            " =1+1",
            "   +cmd",
            "\u{a0}=1+1",       // no-break space
            "\u{2003}-2",       // em space
            "\u{3000}@SUM(A1)", // ideographic space
            " \t=1",
        ] {
            assert!(neutralised(cell), "{cell:?}");
        }
    }

    #[test]
    fn invisible_characters_before_a_formula_do_not_hide_it() {
        for cell in [
            "\u{200b}=1+1", // zero-width space
            "\u{feff}=1+1", // byte order mark
            "\u{200d}+1",   // zero-width joiner
            "\u{2060}-1",   // word joiner
            "\u{ad}@x",     // soft hyphen
            "\u{202e}=1",   // right-to-left override
            "\u{0}=1",      // NUL
        ] {
            assert!(neutralised(cell), "{cell:?}");
        }
    }

    #[test]
    fn full_width_and_other_compatibility_forms_count_as_formula_signs() {
        for cell in [
            "\u{ff1d}1+1",     // ＝
            "\u{ff0b}7 900",   // ＋
            "\u{ff0d}2",       // －
            "\u{ff20}SUM(A1)", // ＠
            "\u{fe66}1",       // small equals sign
            "\u{fe62}1",       // small plus sign
            "\u{fe63}1",       // small hyphen-minus
            "\u{fe6b}x",       // small commercial at
            "\u{2212}1",       // minus sign
            " \u{ff1d}1",
        ] {
            assert!(neutralised(cell), "{cell:?}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for cell in [
            "Иванова",
            "",
            "a=b",
            "8 (815) 365-00-00",
            " Мончегорск",
            "'=quoted",
        ] {
            assert_eq!(neutralise(cell), cell);
        }
    }

    #[test]
    fn every_cell_is_quoted_so_no_separator_starts_a_cell() {
        for delimiter in [b',', b';'] {
            let mut writer = writer(delimiter);
            writer
                .write_record(["x,=1+1", "y;@SUM(A1)", "say \"hi\"", "plain"])
                .unwrap();
            let text = String::from_utf8(writer.into_inner().unwrap()).unwrap();
            let d = delimiter as char;
            assert_eq!(
                text,
                format!("\"x,=1+1\"{d}\"y;@SUM(A1)\"{d}\"say \"\"hi\"\"\"{d}\"plain\"\n")
            );
        }
    }
}
