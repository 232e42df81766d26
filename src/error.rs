//! One error type for the whole engine. Every variant has a stable machine-readable
//! [`Error::code`] (what programs and the page match on) and a sentence for people.

/// Everything that can go wrong between bytes in and text out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("this file is not a GGUF model (it does not start with the bytes \"GGUF\")")]
    NotGguf,
    #[error("the model file is truncated: {what} needs bytes up to {needed} but the file has {len}")]
    Truncated { what: String, needed: u64, len: u64 },
    #[error("GGUF version {0} is not supported (versions 2 and 3 are)")]
    UnsupportedVersion(u32),
    #[error("model architecture \"{0}\" is not supported (supported: gemma3)")]
    UnsupportedArchitecture(String),
    #[error("tensor {name} has GGML type {type_id}, which is not supported")]
    UnsupportedTensorType { name: String, type_id: u32 },
    #[error("the model has no tensor named {0}")]
    MissingTensor(String),
    #[error("tensor {name} has shape {found:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("metadata key {key} is missing or not a {expected}")]
    Metadata { key: String, expected: &'static str },
    #[error("the GGUF file is malformed: {0}")]
    Malformed(String),
    #[error("the adapter does not fit this model: {0}")]
    BadAdapter(String),
    #[error("the adapter was trained on another base model (fingerprint {adapter}; this model's is {model})")]
    ForeignAdapter { adapter: String, model: String },
    #[error("unusable redaction key: {0}")]
    BadKey(String),
    #[error("bad gold data: {0}")]
    BadGold(String),
    #[error("not a text to read: {0}")]
    BadInput(String),
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    #[error("unknown preset {0}")]
    UnknownPreset(String),
    #[error("the text has {bytes} bytes; the limit is {max}: split it into smaller documents")]
    InputTooLarge { bytes: usize, max: usize },
    #[error("cancelled")]
    Cancelled,
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the input needs {needed} tokens but the model context holds {max}")]
    ContextOverflow { needed: usize, max: usize },
    #[error("this KV-cache snapshot was taken from a different model")]
    BadSnapshot,
    #[error("the stored prompt cache cannot be used: {0}")]
    StoredPrompt(String),
    #[error("model computation failed: {0}")]
    Compute(String),
    #[error("WebGPU is unavailable or failed: {0}")]
    Gpu(String),
    #[error("I/O error: {0}")]
    Io(String),
}

impl Error {
    /// Stable identifier for programs (the page, the CLI's `--json`, tests).
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotGguf => "not_gguf",
            Error::Truncated { .. } => "truncated",
            Error::UnsupportedVersion(_) => "unsupported_version",
            Error::UnsupportedArchitecture(_) => "unsupported_arch",
            Error::UnsupportedTensorType { .. } => "unsupported_tensor_type",
            Error::MissingTensor(_) => "missing_tensor",
            Error::TensorShape { .. } => "tensor_shape",
            Error::Metadata { .. } => "bad_metadata",
            Error::BadAdapter(_) => "bad_adapter",
            Error::ForeignAdapter { .. } => "foreign_adapter",
            Error::BadKey(_) => "bad_key",
            Error::BadGold(_) => "bad_gold",
            Error::Malformed(_) => "malformed_gguf",
            Error::BadInput(_) => "bad_input",
            Error::InvalidSchema(_) => "invalid_schema",
            Error::UnknownPreset(_) => "unknown_preset",
            Error::InputTooLarge { .. } => "input_too_large",
            Error::Cancelled => "cancelled",
            Error::EmptyPrompt => "empty_prompt",
            Error::ContextOverflow { .. } => "context_overflow",
            Error::BadSnapshot => "bad_snapshot",
            Error::StoredPrompt(_) => "stored_prompt",
            Error::Compute(_) => "compute",
            Error::Gpu(_) => "gpu",
            Error::Io(_) => "io",
        }
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Compute(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
