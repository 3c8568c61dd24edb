//! Bringing weights into quill's layouts: quantization now; Hugging Face import later.

pub mod quantize;
