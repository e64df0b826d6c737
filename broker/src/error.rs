use kafka_protocol::ResponseError;

/// Result alias for the broker crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Broker failures. Request handlers turn them into Kafka error codes with [`Error::code`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] automq_storage::Error),

    /// A Kafka error to return as is, with a message for logs and error_message fields.
    #[error("{code:?}: {message}")]
    Kafka { code: ResponseError, message: String },

    #[error("invalid configuration: {0}")]
    Config(String),

    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub fn kafka(code: ResponseError, message: impl Into<String>) -> Self {
        Error::Kafka { code, message: message.into() }
    }

    /// The Kafka error code a client should see.
    pub fn code(&self) -> ResponseError {
        use automq_storage::Error as S;
        match self {
            Error::Kafka { code, .. } => *code,
            Error::Storage(S::OffsetOutOfRange { .. }) => ResponseError::OffsetOutOfRange,
            Error::Storage(S::StreamNotFound(_) | S::StreamNotOpen { .. }) => ResponseError::NotLeaderOrFollower,
            Error::Storage(S::StaleEpoch { .. } | S::Fenced(_)) => ResponseError::NotLeaderOrFollower,
            Error::Storage(S::RecordTooLarge { .. }) => ResponseError::MessageTooLarge,
            Error::Storage(S::Corrupt { .. }) => ResponseError::KafkaStorageError,
            Error::Storage(_) => ResponseError::KafkaStorageError,
            Error::Config(_) => ResponseError::InvalidConfig,
            Error::Io(_) => ResponseError::UnknownServerError,
        }
    }
}
