//! temporary stub
use super::parse::{self, DocFormat};
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind { Text }
impl FileKind { pub fn as_str(&self) -> &'static str { "text" } }
pub struct Extracted { pub kind: FileKind, pub text: String, pub text_format: DocFormat }
#[derive(Debug)]
pub struct FormatError(String);
impl std::fmt::Display for FormatError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(&self.0) } }
pub fn extract(file_name: &str, bytes: &[u8]) -> Result<Extracted, FormatError> {
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| FormatError("not utf8".into()))?;
    let text_format = parse::detect_format(file_name, &text);
    Ok(Extracted { kind: FileKind::Text, text, text_format })
}
