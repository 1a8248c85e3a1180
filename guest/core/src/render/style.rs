//! The e-mails' look, written inline on each element: classic Outlook
//! renders HTML with Word and ignores most style sheets, and Gmail keeps
//! only inline styles in many of its clients. Layout is tables (`role =
//! "presentation"`, so screen readers do not read them as data), colours
//! are explicit, and long unbroken values (hashes, paths) wrap instead of
//! widening the message past a phone's screen.

/// The page behind the message.
pub const BODY: &str = "margin:0;padding:0;background-color:#f6f6f6;color:#333333;\
                        font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:1.4;";
/// The outer layout table, full width.
pub const OUTER: &str = "width:100%;background-color:#f6f6f6;border-collapse:collapse;";
/// The message's column: at most 750 px, all of a phone's width below.
pub const CONTAINER: &str = "width:100%;max-width:750px;background-color:#ffffff;border-collapse:collapse;";
/// The coloured header cell (its colour is also a `bgcolor` attribute, for
/// Outlook).
pub const HEADER: &str = "padding:20px;color:#ffffff;text-align:center;";
pub const TITLE: &str = "margin:0;font-size:24px;font-weight:normal;color:#ffffff;";
/// The status in words under the title, so colour is never the only cue.
pub const STATUS: &str = "margin:6px 0 0 0;font-size:14px;font-weight:bold;color:#ffffff;";
pub const CONTENT: &str = "padding:0 20px 20px 20px;";
pub const SECTION_TITLE: &str = "margin:20px 0 8px 0;font-size:18px;font-weight:600;color:#555555;";
pub const NOTE: &str = "margin:16px 0;padding:12px;background-color:#fff8e1;color:#333333;border:1px solid #e0c46c;";
pub const FOOTER: &str = "padding:20px;text-align:center;font-size:12px;color:#777777;";
/// A table of data (or of key/value pairs): as wide as the column. Its
/// cells may break a long value anywhere, so that many columns or a long
/// hash fit a phone's width instead of widening the message. Cell styles
/// are short: they are repeated on every cell.
pub const DATA_TABLE: &str = "width:100%;border-collapse:collapse;";
pub const DATA_CELL: &str =
    "padding:6px;border:1px solid #dddddd;vertical-align:top;overflow-wrap:anywhere;word-break:break-word;";
/// Header cells (column names, keys) break only a word that cannot fit
/// whole, so short keys stay readable.
pub const HEADER_CELL: &str = "padding:6px;border:1px solid #dddddd;vertical-align:top;overflow-wrap:break-word;\
                               text-align:left;background-color:#f4f4f4;";
pub const CENTERED_CELL: &str = "padding:6px;border:1px solid #dddddd;text-align:center;";
pub const LIST: &str = "margin:0;padding:0 0 0 18px;";

/// The header's colours.
pub const ATTENTION: &str = "#B00020";
pub const OK: &str = "#2E7D32";
