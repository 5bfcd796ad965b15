//! TEMPORARY STUB (replaced by the real upstream client).
use crate::config::SmtpServer;
use crate::secret::Secret;

pub struct Delivered {
    pub accepted: Vec<String>,
    pub rejected: Vec<Rejection>,
    pub reply: String,
}
pub struct Rejection {
    pub rcpt: String,
    pub code: u16,
    pub enhanced: Option<String>,
    pub text: String,
    pub permanent: bool,
}
pub struct Failure {
    pub error: crate::Error,
    pub permanent: bool,
    pub code: Option<u16>,
    pub reply: Option<String>,
}
pub async fn deliver(
    _s: &SmtpServer,
    _p: Option<&Secret>,
    _h: &str,
    _f: &str,
    _r: &[String],
    _raw: &[u8],
) -> Result<Delivered, Failure> {
    Err(Failure { error: crate::Error::other("stub"), permanent: false, code: None, reply: None })
}
pub struct Probe {
    pub greeting: String,
    pub capabilities: Vec<String>,
    pub tls: Option<(String, Option<[u8; 32]>)>,
    pub authenticated: bool,
    pub max_size: Option<u64>,
}
pub async fn probe(_s: &SmtpServer, _p: Option<&Secret>, _h: &str) -> Result<Probe, crate::Error> {
    Err(crate::Error::other("stub"))
}
