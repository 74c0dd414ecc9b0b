//! The fonts the labels are measured and drawn with.
//!
//! First DejaVu Sans, cut down to Latin (with Latin Extended-A, so byte-level BPE's `Ġ`),
//! Greek, Cyrillic, punctuation, arrows, maths and the block elements (SentencePiece's `▁`) by
//! scripts/subset_font.sh and compiled in; then, for what it lacks (CJK above all), the fonts
//! installed on the system: a few well-known files, then whatever a scan of the usual font
//! folders finds. The system fonts are listed once per process and each is opened (memory
//! mapped) only when a character first needs it. A character no font has is drawn as the
//! bundled font's .notdef box, never as some other character.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, ScaleFont};

static BUNDLED_DATA: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans-simattr-subset.ttf");

/// The labels' em size in pixels: the SVG's `font-size`.
pub const EM_PX: f32 = 14.0;

/// Fonts known to cover CJK (and much else) where they are installed, tried in this order
/// before the folder scan: Debian/Ubuntu, Fedora and Arch paths, then macOS and Windows.
const KNOWN_FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/google-droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/System/Library/Fonts/Hiragino Sans GB.ttc",
    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
    "C:\\Windows\\Fonts\\msyh.ttc",
    "C:\\Windows\\Fonts\\meiryo.ttc",
    "C:\\Windows\\Fonts\\malgun.ttf",
    "C:\\Windows\\Fonts\\seguisym.ttf",
];

/// Folders scanned (recursively) for *.ttf, *.ttc and *.otf when no known font has a character;
/// `~/.local/share/fonts` and `~/.fonts` are added where $HOME is set.
const FONT_DIRS: &[&str] =
    &["/usr/share/fonts", "/usr/local/share/fonts", "/System/Library/Fonts", "/Library/Fonts", "C:\\Windows\\Fonts"];
const MAX_SCANNED_FILES: usize = 4096;
const MAX_SCAN_DEPTH: usize = 8;

/// Where a character's glyph comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FontSource {
    /// The compiled-in DejaVu Sans subset (also the source of the .notdef box).
    Bundled,
    /// A font file installed on this system (the first face of a collection).
    System(PathBuf),
}

/// The glyph the renderer draws for one character.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedGlyph {
    pub ch: char,
    pub source: FontSource,
    /// 0 is the .notdef glyph: no font has the character.
    pub glyph_id: u16,
}

impl ResolvedGlyph {
    /// True when no font has the character, so that it is drawn as the .notdef box.
    pub fn is_missing(&self) -> bool {
        self.glyph_id == 0
    }
}

/// A run of text drawn on its own: coverage 0–255, `width`×`height`, row-major, the baseline at
/// row `baseline` and the pen starting at column `origin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextMask {
    pub width: usize,
    pub height: usize,
    pub origin: usize,
    pub baseline: usize,
    pub coverage: Vec<u8>,
}

impl TextMask {
    /// Pixels with any ink.
    pub fn inked(&self) -> usize {
        self.coverage.iter().filter(|&&c| c > 0).count()
    }
}

struct SystemFont {
    path: PathBuf,
    font: OnceLock<Option<FontRef<'static>>>,
}

impl SystemFont {
    fn font(&self) -> Option<&FontRef<'static>> {
        self.font.get_or_init(|| open_font(&self.path)).as_ref()
    }
}

/// One glyph to draw: the font it comes from and its id there.
#[derive(Clone, Copy)]
struct Pick {
    font: &'static FontRef<'static>,
    id: GlyphId,
    system: Option<&'static Path>,
}

fn bundled() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    // The file is compiled in, and a unit test parses it: failing here is a build defect.
    FONT.get_or_init(|| FontRef::try_from_slice(BUNDLED_DATA).expect("the bundled font is a valid TrueType font"))
}

/// The first face of a font file or collection, memory mapped for the rest of the process.
fn open_font(path: &Path) -> Option<FontRef<'static>> {
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: installed fonts are not rewritten while a process draws with them (a font package
    // update replaces the file, leaving this mapping on the old one). The mapping is kept for the
    // life of the process, like the fonts list that refers to it.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let map: &'static memmap2::Mmap = Box::leak(Box::new(map));
    let data: &'static [u8] = map;
    FontRef::try_from_slice_and_index(data, 0).ok()
}

/// Every system font, in the order they are tried: the known files, then the scan, sorted by
/// path with plain (regular, proportional) faces first.
fn system_fonts() -> &'static [SystemFont] {
    static FONTS: OnceLock<Vec<SystemFont>> = OnceLock::new();
    FONTS.get_or_init(|| {
        // A path of another system is not absolute here ("C:\…" on Linux, "/usr/…" on Windows).
        let here = |p: &PathBuf| p.is_absolute();
        let mut paths: Vec<PathBuf> =
            KNOWN_FONTS.iter().map(PathBuf::from).filter(|p| here(p) && p.is_file()).collect();
        let mut scanned = Vec::new();
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let home_dirs = home.iter().flat_map(|h| [h.join(".local/share/fonts"), h.join(".fonts")]);
        for dir in FONT_DIRS.iter().map(PathBuf::from).filter(here).chain(home_dirs) {
            scan(&dir, MAX_SCAN_DEPTH, &mut scanned);
        }
        let styled = |p: &Path| {
            let name = p.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
            ["bold", "italic", "oblique", "light", "thin", "black", "mono", "math", "condensed"]
                .iter()
                .any(|s| name.contains(s))
        };
        scanned.sort_by(|a, b| (styled(a), a).cmp(&(styled(b), b)));
        for path in scanned {
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        paths.into_iter().map(|path| SystemFont { path, font: OnceLock::new() }).collect()
    })
}

fn scan(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if out.len() >= MAX_SCANNED_FILES {
            return;
        }
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() && depth > 0 {
            scan(&path, depth - 1, out);
        } else if kind.is_file() || kind.is_symlink() {
            let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase());
            if matches!(ext.as_deref(), Some("ttf" | "ttc" | "otf")) {
                out.push(path);
            }
        }
    }
}

fn pick(c: char) -> Pick {
    let font = bundled();
    let id = font.glyph_id(c);
    if id.0 != 0 {
        return Pick { font, id, system: None };
    }
    for system in system_fonts() {
        if let Some(font) = system.font() {
            let id = font.glyph_id(c);
            if id.0 != 0 {
                return Pick { font, id, system: Some(&system.path) };
            }
        }
    }
    Pick { font, id: GlyphId(0), system: None }
}

/// The glyph `c` is drawn with: which font, and its id there (0: no font has it).
pub fn resolve(c: char) -> ResolvedGlyph {
    let p = pick(c);
    let source = p.system.map_or(FontSource::Bundled, |path| FontSource::System(path.to_path_buf()));
    ResolvedGlyph { ch: c, source, glyph_id: p.id.0 }
}

/// The scale that gives `font` an em of EM_PX, so that glyphs from different fonts match.
fn scale_of(font: &FontRef<'_>) -> PxScale {
    let upem = font.units_per_em().filter(|u| *u > 0.0).unwrap_or(1000.0);
    PxScale::from(EM_PX * font.height_unscaled() / upem)
}

/// Ascent and descent (both positive) of the bundled font at EM_PX, in pixels: the line the
/// layout makes room for.
pub fn line_metrics() -> (f32, f32) {
    let font = bundled();
    let scaled = font.as_scaled(scale_of(font));
    (scaled.ascent(), -scaled.descent())
}

fn advance(p: &Pick) -> f32 {
    p.font.as_scaled(scale_of(p.font)).h_advance(p.id)
}

/// The advance width of `text` in pixels, as drawn (no kerning, no shaping).
pub fn text_width(text: &str) -> f32 {
    text.chars().map(|c| advance(&pick(c))).sum()
}

/// Rasterises the glyphs left to right from a pen at x = 0 on the baseline y = 0, y down, and
/// hands every covered pixel to `plot(x, y, coverage in 0..=1)`.
fn draw_picks(picks: impl Iterator<Item = Pick>, mut plot: impl FnMut(i64, i64, f32)) {
    let mut pen = 0.0_f32;
    for p in picks {
        let scale = scale_of(p.font);
        let glyph = p.id.with_scale_and_position(scale, point(pen, 0.0));
        if let Some(outlined) = p.font.outline_glyph(glyph) {
            let bounds = outlined.px_bounds();
            let (x0, y0) = (bounds.min.x as i64, bounds.min.y as i64);
            outlined.draw(|x, y, coverage| {
                if coverage > 0.0 {
                    plot(x0 + i64::from(x), y0 + i64::from(y), coverage.min(1.0));
                }
            });
        }
        pen += advance(&p);
    }
}

/// Draws `text` as the heatmap does; see [`draw_picks`] for the coordinates.
pub(super) fn draw_text(text: &str, plot: impl FnMut(i64, i64, f32)) {
    draw_picks(text.chars().map(pick), plot);
}

fn mask(width: f32, draw: impl FnOnce(&mut dyn FnMut(i64, i64, f32))) -> TextMask {
    let (ascent, descent) = line_metrics();
    // Room for glyphs that reach past their advance or above the ascent (accents on capitals).
    let pad = EM_PX.ceil() as usize;
    let (origin, baseline) = (pad, ascent.ceil() as usize + pad);
    let (w, h) = (width.ceil() as usize + 2 * pad, (ascent + descent).ceil() as usize + 2 * pad);
    let mut coverage = vec![0u8; w * h];
    draw(&mut |x, y, c| {
        let (x, y) = (x + origin as i64, y + baseline as i64);
        if (0..w as i64).contains(&x) && (0..h as i64).contains(&y) {
            let px = &mut coverage[y as usize * w + x as usize];
            *px = (*px).max((c * 255.0).round() as u8);
        }
    });
    TextMask { width: w, height: h, origin, baseline, coverage }
}

/// `text` drawn alone, as the heatmap draws it.
pub fn text_mask(text: &str) -> TextMask {
    mask(text_width(text), |plot| draw_text(text, plot))
}

/// `n` .notdef boxes of the bundled font: what a run of `n` characters no font has looks like.
pub fn notdef_mask(n: usize) -> TextMask {
    let notdef = Pick { font: bundled(), id: GlyphId(0), system: None };
    let width = advance(&notdef) * n as f32;
    mask(width, |plot| draw_picks(std::iter::repeat_n(notdef, n), plot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_subset_has_the_scripts_it_promises() {
        let font = bundled();
        for c in ['a', 'é', 'Ġ', 'Ċ', 'ő', 'Ж', 'я', 'Ω', 'ή', '▁', '…', '↔', '−', '\u{FFFD}'] {
            assert_ne!(font.glyph_id(c).0, 0, "bundled font lacks {c:?} (U+{:04X})", c as u32);
            assert_eq!(resolve(c).source, FontSource::Bundled);
        }
        assert!(BUNDLED_DATA.len() < 300 * 1024, "the subset grew to {} bytes", BUNDLED_DATA.len());
        assert_eq!(font.glyph_id('東').0, 0, "CJK is left to the system fonts");
    }

    #[test]
    fn line_metrics_fit_a_heatmap_cell() {
        let (ascent, descent) = line_metrics();
        assert!(ascent > 10.0 && descent > 2.0 && ascent + descent < 20.0, "{ascent} {descent}");
        let w = text_width("mm");
        assert!((w - 2.0 * text_width("m")).abs() < 1e-3 && w > 15.0 && w < 30.0, "{w}");
        assert_eq!(text_width(""), 0.0);
    }

    #[test]
    fn the_notdef_box_is_inked_and_unlike_a_letter() {
        let notdef = notdef_mask(1);
        assert!(notdef.inked() > 20, "the .notdef glyph draws nothing");
        let a = text_mask("a");
        assert!(a.inked() > 10);
        assert_ne!(a.coverage, notdef.coverage);
        // Antialiased: partial coverage appears, not only 0 and 255.
        assert!(a.coverage.iter().any(|&c| c > 0 && c < 255), "no antialiasing");
    }

    #[test]
    fn private_use_characters_are_missing() {
        let missing = resolve('\u{E000}');
        assert!(missing.is_missing(), "{missing:?}");
        assert_eq!(text_mask("\u{E000}").coverage, notdef_mask(1).coverage);
    }
}
