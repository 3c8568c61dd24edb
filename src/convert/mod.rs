//! Bringing weights into quill's layouts: Hugging Face import and quantization.

pub mod hf;
pub mod quantize;
