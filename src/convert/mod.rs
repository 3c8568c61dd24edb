//! Bringing weights into quill's layouts: Hugging Face import (one file per family under
//! [`hf`]), PyTorch LSTM import ([`torch_lstm`]), and quantization.

pub mod hf;
pub mod quantize;
mod torch_lstm;
