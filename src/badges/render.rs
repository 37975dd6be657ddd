//! Badges drawn as PDF pages: the attendee's name large (wrapped and sized to fit, long
//! Russian names included), organisation, position, city, a band in the category's colour,
//! the signed QR code the check-in accepts, the event's name and logo. One badge an A6 page,
//! or sheets of 4 or 8 on A4 with cutting marks.
//!
//! `krilla` writes the PDF and embeds the subset of the font each document uses; the fonts
//! (DejaVu Sans, free, with its licence in `assets/fonts`) are compiled into the binary, so
//! nothing is fetched at run time. Line breaking is ours: names are few words, and choosing
//! the breaks that make the longest line shortest (rather than filling lines greedily) keeps
//! "Константинопольская-Преображенская / Анна-Мария Александровна" readable; a crate for
//! paragraph layout would bring a font system for this one job.

use krilla::color::rgb;
use krilla::geom::{Path, PathBuilder, Point, Rect};
use krilla::image::Image;
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, FillRule, Stroke};
use krilla::text::{Font, TextDirection};
use krilla::{Data, Document};
use qrcode::QrCode;
use skrifa::instance::{LocationRef, Size};
use skrifa::{FontRef, MetadataProvider};

static REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansCondensed-Bold.ttf");

/// Points per millimetre.
const MM: f32 = 72.0 / 25.4;
const LINE_HEIGHT: f32 = 1.15;

/// How badges are put on paper.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One badge an A6 page (105 × 148 mm), for badge printers and A6 card stock.
    A6,
    /// Four badges (95 × 138 mm) on an A4 page, with cutting marks.
    A4x4,
    /// Eight badges (95 × 68 mm, landscape) on an A4 page, with cutting marks.
    A4x8,
}

impl Layout {
    /// The page's width and height, in points.
    pub fn page(self) -> (f32, f32) {
        match self {
            Layout::A6 => (105.0 * MM, 148.0 * MM),
            Layout::A4x4 | Layout::A4x8 => (210.0 * MM, 297.0 * MM),
        }
    }

    /// Columns, rows, and one badge's width and height in points.
    fn grid(self) -> (usize, usize, f32, f32) {
        match self {
            Layout::A6 => (1, 1, 105.0 * MM, 148.0 * MM),
            Layout::A4x4 => (2, 2, 95.0 * MM, 138.0 * MM),
            Layout::A4x8 => (2, 4, 95.0 * MM, 68.0 * MM),
        }
    }

    pub fn per_page(self) -> usize {
        let (columns, rows, _, _) = self.grid();
        columns * rows
    }

    /// Where the badges of one page go, in reading order.
    fn slots(self) -> Vec<Rect> {
        let (page_w, page_h) = self.page();
        let (columns, rows, w, h) = self.grid();
        let left = (page_w - columns as f32 * w) / 2.0;
        let top = (page_h - rows as f32 * h) / 2.0;
        (0..rows)
            .flat_map(|row| {
                (0..columns).map(move |column| {
                    Rect::from_xywh(left + column as f32 * w, top + row as f32 * h, w, h)
                        .expect("a badge has a size")
                })
            })
            .collect()
    }
}

/// What one badge shows.
#[derive(Debug, Clone)]
pub struct Badge {
    pub full_name: String,
    pub organisation: Option<String>,
    pub position: Option<String>,
    pub city: Option<String>,
    /// The category band's label and colour.
    pub band: String,
    pub colour: [u8; 3],
    /// The signed payload of the QR code.
    pub qr_code: String,
}

/// What every badge of the document shares.
#[derive(Debug, Clone)]
pub struct Design {
    /// Printed at the top, unless `None`.
    pub event_title: Option<String>,
    pub logo: Option<Logo>,
    pub language: String,
}

/// A logo image, already checked to decode.
#[derive(Debug, Clone)]
pub struct Logo {
    pub bytes: Vec<u8>,
    pub jpeg: bool,
}

impl Logo {
    fn image(&self) -> Option<Image> {
        let data = Data::from(self.bytes.clone());
        let image = if self.jpeg {
            Image::from_jpeg(data, true)
        } else {
            Image::from_png(data, true)
        };
        image.ok()
    }
}

/// A font for drawing (krilla) and for measuring (skrifa): the same bytes.
struct Face {
    font: Font,
    bytes: &'static [u8],
}

impl Face {
    fn new(bytes: &'static [u8]) -> Self {
        Face {
            font: Font::new(Data::from(bytes), 0).expect("the bundled font loads"),
            bytes,
        }
    }

    /// The width of `text` at `size` points (advance widths; no kerning, so never short).
    fn width(&self, text: &str, size: f32) -> f32 {
        let font = FontRef::new(self.bytes).expect("the bundled font parses");
        let charmap = font.charmap();
        let metrics = font.glyph_metrics(Size::new(size), LocationRef::default());
        text.chars()
            .filter_map(|c| charmap.map(c))
            .filter_map(|glyph| metrics.advance_width(glyph))
            .sum()
    }
}

/// A run of text that lines may break after: a word (with the space before it) or the part
/// of a hyphenated word up to its hyphen.
#[derive(Debug, Clone)]
struct Piece {
    text: String,
    /// Joined to the previous piece with a space (else directly, after a hyphen).
    spaced: bool,
}

fn pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    for word in text.split_whitespace() {
        let mut spaced = true;
        let mut rest = word;
        while let Some(at) = rest.find('-').filter(|&at| at > 0 && at + 1 < rest.len()) {
            out.push(Piece {
                text: rest[..=at].to_owned(),
                spaced,
            });
            spaced = false;
            rest = &rest[at + 1..];
        }
        out.push(Piece {
            text: rest.to_owned(),
            spaced,
        });
    }
    out
}

fn join(pieces: &[Piece]) -> String {
    let mut line = String::new();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 && piece.spaced {
            line.push(' ');
        }
        line.push_str(&piece.text);
    }
    line
}

/// Text laid out in lines at one size.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub size: f32,
    pub lines: Vec<String>,
}

/// Pieces up to which exhaustive line breaking is tried (2^(n-1) candidates).
const EXHAUSTIVE: usize = 12;

/// The fewest lines, at most `max_lines`, each no wider than `width`, with the longest line as
/// short as it can be; `None` if the text does not fit.
fn balanced(
    face: &Face,
    pieces: &[Piece],
    size: f32,
    width: f32,
    max_lines: usize,
) -> Option<Vec<String>> {
    let n = pieces.len();
    if n == 0 {
        return Some(Vec::new());
    }
    if n > EXHAUSTIVE {
        return greedy(face, pieces, size, width, max_lines);
    }
    let mut best: Option<(usize, f32, Vec<String>)> = None;
    for breaks in 0u32..(1 << (n - 1)) {
        let lines_count = breaks.count_ones() as usize + 1;
        if lines_count > max_lines {
            continue;
        }
        let mut lines = Vec::with_capacity(lines_count);
        let mut start = 0;
        for i in 0..n {
            if i == n - 1 || breaks & (1 << i) != 0 {
                lines.push(join(&pieces[start..=i]));
                start = i + 1;
            }
        }
        let widest = lines
            .iter()
            .map(|l| face.width(l, size))
            .fold(0.0, f32::max);
        if widest > width {
            continue;
        }
        let better = match &best {
            None => true,
            Some((count, w, _)) => (lines_count, widest) < (*count, *w),
        };
        if better {
            best = Some((lines_count, widest, lines));
        }
    }
    best.map(|(_, _, lines)| lines)
}

fn greedy(
    face: &Face,
    pieces: &[Piece],
    size: f32,
    width: f32,
    max_lines: usize,
) -> Option<Vec<String>> {
    let mut lines: Vec<Vec<Piece>> = vec![Vec::new()];
    for piece in pieces {
        let current = lines.last_mut().expect("one line at least");
        current.push(piece.clone());
        if current.len() > 1 && face.width(&join(current), size) > width {
            let moved = current.pop().expect("just pushed");
            lines.push(vec![Piece {
                spaced: false,
                ..moved
            }]);
        }
    }
    let lines: Vec<String> = lines.iter().map(|l| join(l)).collect();
    (lines.len() <= max_lines && lines.iter().all(|l| face.width(l, size) <= width))
        .then_some(lines)
}

/// The largest size from `max` down to `min` at which `text` fits `width` in at most
/// `max_lines` lines; at `min`, what does not fit is cut with an ellipsis.
fn fit(face: &Face, text: &str, width: f32, max: f32, min: f32, max_lines: usize) -> Fitted {
    let pieces = pieces(text);
    let mut size = max;
    while size >= min {
        if let Some(lines) = balanced(face, &pieces, size, width, max_lines) {
            return Fitted { size, lines };
        }
        size -= 0.5;
    }
    Fitted {
        size: min,
        lines: cut(face, text, min, width, max_lines),
    }
}

/// Breaks anywhere (characters), and ends the last line with "…" if text is left over.
fn cut(face: &Face, text: &str, size: f32, width: f32, max_lines: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        line.push(c);
        if face.width(&line, size) > width {
            line.pop();
            if lines.len() + 1 == max_lines {
                while !line.is_empty() && face.width(&format!("{line}…"), size) > width {
                    line.pop();
                }
                lines.push(format!("{}…", line.trim_end()));
                return lines;
            }
            lines.push(line.trim_end().to_owned());
            line = if c == ' ' {
                String::new()
            } else {
                c.to_string()
            };
        }
        if chars.peek().is_none() {
            lines.push(line.clone());
        }
    }
    lines
}

fn fill(colour: [u8; 3]) -> Fill {
    Fill {
        paint: rgb::Color::new(colour[0], colour[1], colour[2]).into(),
        opacity: NormalizedF32::ONE,
        rule: FillRule::NonZero,
    }
}

const BLACK: [u8; 3] = [0, 0, 0];
const GREY: [u8; 3] = [0x55, 0x5B, 0x66];
const WHITE: [u8; 3] = [0xFF, 0xFF, 0xFF];

fn rect_path(rect: Rect) -> Option<Path> {
    let mut builder = PathBuilder::new();
    builder.push_rect(rect);
    builder.finish()
}

/// Text colour that reads on a band of `colour` (WCAG relative luminance).
fn on(colour: [u8; 3]) -> [u8; 3] {
    let channel = |c: u8| {
        let c = f32::from(c) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let luminance =
        0.2126 * channel(colour[0]) + 0.7152 * channel(colour[1]) + 0.0722 * channel(colour[2]);
    if luminance > 0.35 { BLACK } else { WHITE }
}

struct Fonts {
    regular: Face,
    bold: Face,
}

/// The badges as a PDF document, `layout.per_page()` badges a page.
pub fn render(badges: &[Badge], design: &Design, layout: Layout) -> anyhow::Result<Vec<u8>> {
    let fonts = Fonts {
        regular: Face::new(REGULAR),
        bold: Face::new(BOLD),
    };
    let logo = design.logo.as_ref().and_then(Logo::image);
    let mut document = Document::new();
    let mut metadata = Metadata::new()
        .creator("registrar".to_owned())
        .language(design.language.clone());
    if let Some(title) = &design.event_title {
        metadata = metadata.title(title.clone());
    }
    document.set_metadata(metadata);
    let (page_w, page_h) = layout.page();
    let slots = layout.slots();
    for chunk in badges.chunks(layout.per_page()) {
        let settings =
            PageSettings::from_wh(page_w, page_h).ok_or_else(|| anyhow::anyhow!("page size"))?;
        let mut page = document.start_page_with(settings);
        let mut surface = page.surface();
        for (badge, slot) in chunk.iter().zip(&slots) {
            draw_badge(&mut surface, &fonts, design, logo.as_ref(), badge, *slot);
        }
        if layout != Layout::A6 {
            cutting_marks(&mut surface, layout, &slots);
        }
        surface.finish();
        page.finish();
    }
    document
        .finish()
        .map_err(|error| anyhow::anyhow!("the badges' PDF could not be written: {error:?}"))
}

/// Short lines outside the sheet's grid, continuing every cut line: where to cut, without
/// printing on any badge.
fn cutting_marks(surface: &mut krilla::surface::Surface<'_>, layout: Layout, slots: &[Rect]) {
    let (columns, rows, w, h) = layout.grid();
    let (left, top) = (slots[0].left(), slots[0].top());
    let (right, bottom) = (left + columns as f32 * w, top + rows as f32 * h);
    let (gap, length) = (1.5 * MM, 5.0 * MM);
    let mut builder = PathBuilder::new();
    for column in 0..=columns {
        let x = left + column as f32 * w;
        builder.move_to(x, top - gap - length);
        builder.line_to(x, top - gap);
        builder.move_to(x, bottom + gap);
        builder.line_to(x, bottom + gap + length);
    }
    for row in 0..=rows {
        let y = top + row as f32 * h;
        builder.move_to(left - gap - length, y);
        builder.line_to(left - gap, y);
        builder.move_to(right + gap, y);
        builder.line_to(right + gap + length, y);
    }
    if let Some(path) = builder.finish() {
        surface.set_fill(None);
        surface.set_stroke(Some(Stroke {
            width: 0.4,
            ..Stroke::default()
        }));
        surface.draw_path(&path);
        surface.set_stroke(None);
    }
}

fn draw_lines(
    surface: &mut krilla::surface::Surface<'_>,
    face: &Face,
    fitted: &Fitted,
    colour: [u8; 3],
    centre_x: f32,
    top: f32,
) -> f32 {
    surface.set_fill(Some(fill(colour)));
    let mut y = top;
    for line in &fitted.lines {
        y += fitted.size;
        let x = centre_x - face.width(line, fitted.size) / 2.0;
        surface.draw_text(
            Point::from_xy(x, y),
            face.font.clone(),
            fitted.size,
            line,
            false,
            TextDirection::Auto,
        );
        y += fitted.size * (LINE_HEIGHT - 1.0);
    }
    y - top
}

fn block_height(fitted: &Fitted) -> f32 {
    fitted.lines.len() as f32 * fitted.size * LINE_HEIGHT
}

fn draw_badge(
    surface: &mut krilla::surface::Surface<'_>,
    fonts: &Fonts,
    design: &Design,
    logo: Option<&Image>,
    badge: &Badge,
    slot: Rect,
) {
    let (x0, y0, w, h) = (slot.left(), slot.top(), slot.width(), slot.height());
    let unit = (w * h).sqrt();
    let pad = unit * 0.045;
    let landscape = w > h;

    // The category band along the bottom.
    let band_h = if landscape { h * 0.14 } else { h * 0.1 };
    let band_top = y0 + h - band_h;
    if let Some(path) = Rect::from_xywh(x0, band_top, w, band_h).and_then(rect_path) {
        surface.set_fill(Some(fill(badge.colour)));
        surface.draw_path(&path);
    }
    let label = fit(
        &fonts.bold,
        &badge.band.to_uppercase(),
        w - 2.0 * pad,
        band_h * 0.5,
        band_h * 0.25,
        1,
    );
    let label_top = band_top + (band_h - block_height(&label)) / 2.0;
    draw_lines(
        surface,
        &fonts.bold,
        &label,
        on(badge.colour),
        x0 + w / 2.0,
        label_top,
    );

    // The header: logo and event title.
    let mut header_bottom = y0 + pad;
    let header_h = unit * 0.09;
    let mut title_left = x0 + pad;
    if let Some(logo) = logo {
        let (iw, ih) = logo.size();
        let scale = (header_h / ih as f32).min(w * 0.3 / iw as f32);
        let (lw, lh) = (iw as f32 * scale, ih as f32 * scale);
        if let Some(size) = krilla::geom::Size::from_wh(lw, lh) {
            surface.push_transform(&krilla::geom::Transform::from_translate(x0 + pad, y0 + pad));
            surface.draw_image(logo.clone(), size);
            surface.pop();
            title_left += lw + pad * 0.6;
        }
        header_bottom = y0 + pad + lh.max(0.0).min(header_h);
    }
    if let Some(title) = &design.event_title {
        let title_w = x0 + w - pad - title_left;
        let fitted = fit(
            &fonts.regular,
            title,
            title_w,
            unit * 0.032,
            unit * 0.022,
            2,
        );
        let used = block_height(&fitted);
        let centre = title_left + title_w / 2.0;
        draw_lines(surface, &fonts.regular, &fitted, GREY, centre, y0 + pad);
        header_bottom = header_bottom.max(y0 + pad + used);
    }

    // The QR code: bottom centre on portrait badges, at the right on landscape ones.
    let below_header = header_bottom + pad * 0.5;
    let (qr_x, qr_y, qr_size, text_left, text_right, text_bottom);
    if landscape {
        qr_size = (band_top - below_header - pad * 0.5).min(w * 0.36);
        qr_x = x0 + w - pad * 0.6 - qr_size;
        qr_y = below_header + (band_top - below_header - qr_size) / 2.0;
        text_left = x0 + pad;
        text_right = qr_x - pad * 0.4;
        text_bottom = band_top - pad * 0.4;
    } else {
        qr_size = (w * 0.42).min(h * 0.3);
        qr_x = x0 + (w - qr_size) / 2.0;
        qr_y = band_top - pad * 0.6 - qr_size;
        text_left = x0 + pad;
        text_right = x0 + w - pad;
        text_bottom = qr_y - pad * 0.4;
    }
    draw_qr(surface, &badge.qr_code, qr_x, qr_y, qr_size);

    // Name, organisation, position and city, centred in what is left.
    let text_w = text_right - text_left;
    let text_top = below_header;
    let available = text_bottom - text_top;
    let name = fit(
        &fonts.bold,
        &badge.full_name,
        text_w,
        unit * 0.1,
        unit * 0.045,
        3,
    );
    let small = |text: &str, lines| {
        fit(
            &fonts.regular,
            text,
            text_w,
            unit * 0.042,
            unit * 0.028,
            lines,
        )
    };
    let mut details: Vec<Fitted> = Vec::new();
    for (text, lines) in [
        (badge.organisation.as_deref(), 2),
        (badge.position.as_deref(), 2),
        (badge.city.as_deref(), 1),
    ] {
        if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
            details.push(small(text, lines));
        }
    }
    let gap = unit * 0.025;
    // Details that do not fit under the name are left out, last first.
    let mut total =
        block_height(&name) + details.iter().map(|d| gap + block_height(d)).sum::<f32>();
    while total > available && !details.is_empty() {
        let dropped = details.pop().expect("not empty");
        total -= gap + block_height(&dropped);
    }
    let centre = text_left + text_w / 2.0;
    let mut y = text_top + ((available - total) / 2.0).max(0.0);
    y += draw_lines(surface, &fonts.bold, &name, BLACK, centre, y);
    for detail in &details {
        y += gap;
        y += draw_lines(surface, &fonts.regular, detail, GREY, centre, y);
    }
}

/// The QR code's dark modules as one filled path, with its quiet zone left white.
fn draw_qr(surface: &mut krilla::surface::Surface<'_>, payload: &str, x: f32, y: f32, size: f32) {
    let Ok(code) = QrCode::new(payload.as_bytes()) else {
        return;
    };
    let modules = code.width();
    // Four modules of quiet zone on each side, inside `size`.
    let module = size / (modules + 8) as f32;
    let (left, top) = (x + 4.0 * module, y + 4.0 * module);
    let colours = code.to_colors();
    let mut builder = PathBuilder::new();
    for (i, colour) in colours.iter().enumerate() {
        if *colour == qrcode::Color::Dark {
            let (column, row) = ((i % modules) as f32, (i / modules) as f32);
            // A hair wider than a module, so that neighbours overlap and no seam shows.
            if let Some(rect) = Rect::from_xywh(
                left + column * module,
                top + row * module,
                module + 0.05,
                module + 0.05,
            ) {
                builder.push_rect(rect);
            }
        }
    }
    if let Some(path) = builder.finish() {
        surface.set_fill(Some(fill(BLACK)));
        surface.draw_path(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bold() -> Face {
        Face::new(BOLD)
    }

    #[test]
    fn a_short_name_stays_on_one_line_at_the_largest_size() {
        let fitted = fit(&bold(), "Анна Иванова", 280.0, 30.0, 14.0, 3);
        assert_eq!(fitted.size, 30.0);
        assert_eq!(fitted.lines, ["Анна Иванова"]);
    }

    #[test]
    fn a_long_russian_name_breaks_into_balanced_lines_at_spaces_and_hyphens() {
        let face = bold();
        let name = "Константинопольская-Преображенская Анна-Мария Александровна";
        let fitted = fit(&face, name, 260.0, 30.0, 14.0, 3);
        assert!(fitted.lines.len() > 1, "{fitted:?}");
        assert!(
            fitted
                .lines
                .iter()
                .all(|l| face.width(l, fitted.size) <= 260.0)
        );
        // Nothing lost or added: the lines put together give the name back.
        let rejoined = fitted.lines.iter().fold(String::new(), |acc, line| {
            if acc.is_empty() || acc.ends_with('-') {
                acc + line
            } else {
                acc + " " + line
            }
        });
        assert_eq!(rejoined, name);
        assert!(fitted.lines.iter().any(|l| l.ends_with('-')), "{fitted:?}");
    }

    #[test]
    fn balanced_breaking_does_not_leave_a_lone_short_word() {
        let face = bold();
        // Greedy filling would put the first three words on one line and "Ли" alone.
        let lines = balanced(&face, &pieces("Анна Сергеевна Иванова Ли"), 20.0, 300.0, 3).unwrap();
        let widths: Vec<f32> = lines.iter().map(|l| face.width(l, 20.0)).collect();
        let (min, max) = widths
            .iter()
            .fold((f32::MAX, 0f32), |(a, b), w| (a.min(*w), b.max(*w)));
        assert!(lines.len() == 1 || min > max / 3.0, "{lines:?}");
    }

    #[test]
    fn a_word_wider_than_the_badge_is_cut_with_an_ellipsis_at_the_smallest_size() {
        let face = bold();
        let fitted = fit(&face, &"Щ".repeat(200), 100.0, 30.0, 14.0, 2);
        assert_eq!(fitted.size, 14.0);
        assert_eq!(fitted.lines.len(), 2);
        assert!(fitted.lines[1].ends_with('…'));
        assert!(fitted.lines.iter().all(|l| face.width(l, 14.0) <= 100.0));
    }

    #[test]
    fn band_text_is_white_on_dark_colours_and_black_on_light_ones() {
        assert_eq!(on([0x1F, 0x4E, 0x9C]), WHITE);
        assert_eq!(on([0xF4, 0xD0, 0x3F]), BLACK);
    }

    #[test]
    fn sheets_hold_their_badges_inside_the_page_with_room_for_cutting_marks() {
        for layout in [Layout::A6, Layout::A4x4, Layout::A4x8] {
            let (page_w, page_h) = layout.page();
            let slots = layout.slots();
            assert_eq!(slots.len(), layout.per_page());
            let margin = if layout == Layout::A6 { 0.0 } else { 6.5 * MM };
            for slot in slots {
                assert!(slot.left() >= margin - 0.01 && slot.right() <= page_w - margin + 0.01);
                assert!(slot.top() >= margin - 0.01 && slot.bottom() <= page_h - margin + 0.01);
            }
        }
    }
}
