//! The one error type and the one place that maps it to the wire: status,
//! stable code, body and headers. The reasons of each phase (token, path,
//! host, proof, MCP message, origin answer) are defined here too, next to
//! their mapping, so this module is a leaf that every phase imports from.
//!
//! Invariant: the wire body says little and never carries internal detail,
//! secrets or upstream text; [`Error::detail`] carries the facts for the
//! audit record only. Codes are stable: clients and alerting match on them.

use crate::level::Level;

/// The challenge of a `401` for a missing or invalid session: Basic (the
/// token as the password) and Bearer.
pub const CHALLENGE: &str = "Basic realm=\"airlock\", Bearer realm=\"airlock\"";

/// Why a token was refused. Never shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Malformed,
    /// Two different tokens in one request (two headers, a header and a
    /// query parameter, or one parameter twice).
    Conflicting,
    UnknownKey,
    BadMac,
    BadClaims,
    Expired {
        exp: u64,
        now: u64,
    },
    NotYetValid {
        iat: u64,
        now: u64,
    },
    WrongAudience,
}

/// Why a path was refused. Never shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    TooLong,
    EmptySegment,
    DotSegment,
    EncodedSeparator,
    Backslash,
    ControlByte,
    BadPercentEncoding,
    DoubleEncoding,
    InvalidUtf8,
    /// `;` parameters in a tool that does not allow them: origins disagree
    /// on whether `/a;x/b` is the segment `a` or `a;x`.
    PathParameter,
    /// A character that NFKC normalization (done by some Java and Python
    /// stacks after routing) turns into `.`, `/`, `\`, `;` or `%`:
    /// `／..／` would become `/../` behind the check.
    CompatibilityForm,
}

/// Why a host was refused. Never shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    Empty,
    TooLong,
    Userinfo,
    Encoded,
    NonAscii,
    BadCharacter,
    BadLabel,
    BadPort,
    IpLiteral,
    Localhost,
    PrivateName,
    Metadata,
    SingleLabel,
    SelfHost,
}

/// Why a proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    Missing,
    /// Malformed header or wrong MAC: one answer for both.
    Invalid,
    Stale,
    Replayed,
}

/// A message that is not valid JSON-RPC for this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpError {
    TooLarge,
    Parse,
    Batch,
    Invalid(&'static str),
}

impl McpError {
    /// The JSON-RPC error body for the sandbox (id unknown: null).
    pub fn response(&self) -> Vec<u8> {
        let (code, message) = match self {
            McpError::TooLarge => (-32600, "message too large"),
            McpError::Parse => (-32700, "parse error"),
            McpError::Batch => (-32600, "batches are not supported"),
            McpError::Invalid(why) => (-32600, *why),
        };
        serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}}).to_string().into_bytes()
    }

    pub fn code(&self) -> &'static str {
        match self {
            McpError::TooLarge => "mcp_message_too_large",
            _ => "mcp_invalid_message",
        }
    }
}

/// Why an origin answer was refused before its body was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uninspectable {
    /// A `Content-Encoding` other than identity or exactly one decoded coding.
    /// Holds the codings as Airlock read them (lower-case, registered names
    /// only, any other as `other`; at most 64 bytes).
    Encoding(String),
    /// A `206` from a credentialed origin of a tool without `allow_range`.
    PartialContent,
    /// A package index document that could not be read whole and rewritten
    /// (see [`crate::index`]); names what was refused.
    Index(&'static str),
}

/// Why an AWS tool's request was refused before anything was forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigV4Error {
    /// A presigned URL (the signature in the query): Airlock verifies
    /// signatures in the `Authorization` header only.
    Presigned,
    /// An `aws-chunked` body (`STREAMING-*` payload): its chunks carry
    /// signatures of their own, which Airlock does not verify or re-sign.
    Streaming,
    /// The body does not hash to the `x-amz-content-sha256` that was signed.
    PayloadMismatch,
    /// No signature, a malformed one, another key id, scope or time, or a
    /// signature that does not verify: one answer for all.
    Invalid(&'static str),
}

/// Where a failure came from, so an origin outage is never blamed on the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Any session-token failure. One wire body for all of them, so a caller
    /// cannot tell a bad MAC from an unknown key id or an expired token.
    InvalidSession(TokenError),
    AdminKeyInvalid,
    /// The tool is unknown to the policy or absent from the session's scope.
    /// One wire body for both: the sandbox cannot enumerate tools.
    ToolNotAllowed {
        tool: String,
    },
    RouteNotAllowed {
        tool: String,
        method: String,
    },
    LevelInsufficient {
        tool: String,
        required: Level,
        granted: Level,
    },
    InvalidPath(PathError),
    /// The query carries a method-override parameter (`_method` …) and the
    /// tool does not allow one: the origin would act on a method the policy
    /// did not decide.
    MethodOverride {
        tool: String,
    },
    /// A malformed control-plane or tool request. The message is built by
    /// Airlock from the request's own fields and is safe to return.
    InvalidRequest(String),
    /// `declared` is the Content-Length, or `None` when the body was cut
    /// off while streaming.
    BodyTooLarge {
        limit: u64,
        declared: Option<u64>,
    },
    /// A malformed egress host.
    InvalidHost {
        why: HostError,
    },
    /// A destination that is never reachable, whatever the policy says.
    HostForbidden {
        host: String,
        why: HostError,
    },
    /// No egress for this session, or the host is not on the allowlist. One
    /// wire body for both.
    EgressNotAllowed {
        host: String,
    },
    UrlTooLong {
        len: usize,
    },
    /// A malformed, batched or oversized MCP message.
    McpInvalid(McpError),
    /// An `Mcp-Session-Id` that was not handed out to this session.
    McpSessionInvalid,
    HeadersTooLarge {
        size: usize,
    },
    NotFound,
    MethodNotAllowed,
    UpstreamUnavailable {
        detail: String,
    },
    UpstreamTimeout {
        after_ms: u64,
    },
    /// The origin answered 5xx; its body is not passed on.
    UpstreamError {
        status: u16,
        retry_after: Option<String>,
    },
    /// An origin answer Airlock could not fully inspect (a coding it did
    /// not decode, a slice of a body): refused before its body is read.
    UpstreamUninspectable {
        status: u16,
        why: Uninspectable,
    },
    PolicyInvalid(String),
    /// The session was revoked (or its state record is gone).
    SessionRevoked,
    SessionNotFound,
    Proof(ProofError),
    /// `tool`: the (session, tool) limit; otherwise the session's.
    RateLimited {
        tool: bool,
        retry_after_s: u64,
    },
    IdempotencyKeyReused,
    IdempotencyInFlight,
    /// The first answer was too large to keep; `status` is what it was.
    IdempotencyNotStored {
        status: u16,
    },
    /// Held for a human: the approval id to present once approved.
    ApprovalRequired {
        id: String,
    },
    ApprovalPending,
    ApprovalDenied,
    /// Unknown, expired, used, or bound to another request: one answer.
    ApprovalInvalid,
    ApprovalNotFound,
    ApprovalDecided {
        status: &'static str,
    },
    /// An approval-page link that is malformed, forged or tampered with, or
    /// names no approval: one answer for all.
    ApprovalLinkInvalid,
    ApprovalLinkExpired {
        exp: u64,
        now: u64,
    },
    /// A decision POST without the page's CSRF token or from another origin.
    ApprovalCsrf {
        why: &'static str,
    },
    /// The client hung up while its request was held; nothing was forwarded.
    ClientClosed,
    /// The session state (Durable Object) could not be reached or failed.
    StateUnavailable(String),
    /// A secret, binding or signing key the request needs is missing or unusable.
    Misconfigured(String),
    /// The upstream credential Airlock mints (a GitHub App installation
    /// token, an OAuth or Google access token) could not be obtained: its
    /// token endpoint failed, was slow, refused or answered garbage.
    CredentialUnavailable {
        detail: String,
    },
    Internal(String),
    /// An AWS tool's request whose SigV4 signature Airlock does not accept.
    SigV4(SigV4Error),
}

impl Error {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidSession(_) => "invalid_session",
            Error::AdminKeyInvalid => "invalid_admin_key",
            Error::ToolNotAllowed { .. } => "tool_not_allowed",
            Error::RouteNotAllowed { .. } => "route_not_allowed",
            Error::LevelInsufficient { .. } => "level_insufficient",
            Error::InvalidPath(_) => "invalid_path",
            Error::MethodOverride { .. } => "method_override_not_allowed",
            Error::InvalidRequest(_) => "invalid_request",
            Error::BodyTooLarge { .. } => "body_too_large",
            Error::InvalidHost { .. } => "invalid_host",
            Error::HostForbidden { .. } => "host_forbidden",
            Error::EgressNotAllowed { .. } => "egress_not_allowed",
            Error::UrlTooLong { .. } => "url_too_long",
            Error::McpInvalid(e) => e.code(),
            Error::McpSessionInvalid => "mcp_session_invalid",
            Error::HeadersTooLarge { .. } => "headers_too_large",
            Error::NotFound => "not_found",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::UpstreamUnavailable { .. } => "upstream_unavailable",
            Error::UpstreamTimeout { .. } => "upstream_timeout",
            Error::UpstreamError { .. } => "upstream_error",
            Error::UpstreamUninspectable { why: Uninspectable::Encoding(_), .. } => "upstream_encoding_refused",
            Error::UpstreamUninspectable { why: Uninspectable::PartialContent, .. } => "upstream_partial_content",
            Error::UpstreamUninspectable { why: Uninspectable::Index(_), .. } => "upstream_index_unreadable",
            Error::PolicyInvalid(_) => "policy_invalid",
            Error::SessionRevoked => "session_revoked",
            Error::SessionNotFound => "session_not_found",
            Error::Proof(ProofError::Missing) => "proof_required",
            Error::Proof(ProofError::Invalid) => "proof_invalid",
            Error::Proof(ProofError::Stale) => "proof_stale",
            Error::Proof(ProofError::Replayed) => "proof_replayed",
            Error::RateLimited { .. } => "rate_limited",
            Error::IdempotencyKeyReused => "idempotency_key_reused",
            Error::IdempotencyInFlight => "idempotency_in_flight",
            Error::IdempotencyNotStored { .. } => "idempotency_response_not_stored",
            Error::ApprovalRequired { .. } => "approval_required",
            Error::ApprovalPending => "approval_pending",
            Error::ApprovalDenied => "approval_denied",
            Error::ApprovalInvalid => "approval_invalid",
            Error::ApprovalNotFound => "approval_not_found",
            Error::ApprovalDecided { .. } => "approval_decided",
            Error::ApprovalLinkInvalid => "approval_link_invalid",
            Error::ApprovalLinkExpired { .. } => "approval_link_expired",
            Error::ApprovalCsrf { .. } => "approval_csrf_failed",
            Error::ClientClosed => "client_closed",
            Error::StateUnavailable(_) => "state_unavailable",
            Error::Misconfigured(_) => "misconfigured",
            Error::CredentialUnavailable { .. } => "credential_unavailable",
            Error::Internal(_) => "internal",
            Error::SigV4(SigV4Error::Presigned) => "presigned_refused",
            Error::SigV4(SigV4Error::Streaming) => "aws_chunked_refused",
            Error::SigV4(SigV4Error::PayloadMismatch) => "payload_hash_mismatch",
            Error::SigV4(SigV4Error::Invalid(_)) => "signature_invalid",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::InvalidSession(_) | Error::AdminKeyInvalid | Error::SessionRevoked | Error::Proof(_) => 401,
            Error::ApprovalRequired { .. } | Error::ApprovalPending | Error::ApprovalDenied | Error::ApprovalInvalid | Error::ApprovalCsrf { .. } => 403,
            Error::SessionNotFound | Error::ApprovalNotFound | Error::ApprovalLinkInvalid => 404,
            Error::ApprovalLinkExpired { .. } => 410,
            // Nobody reads it: the status nginx logs for a client that left.
            Error::ClientClosed => 499,
            Error::IdempotencyInFlight | Error::IdempotencyNotStored { .. } | Error::ApprovalDecided { .. } => 409,
            Error::IdempotencyKeyReused => 422,
            Error::RateLimited { .. } => 429,
            Error::StateUnavailable(_) => 503,
            Error::ToolNotAllowed { .. }
            | Error::RouteNotAllowed { .. }
            | Error::LevelInsufficient { .. }
            | Error::HostForbidden { .. }
            | Error::EgressNotAllowed { .. } => 403,
            Error::InvalidPath(_) | Error::MethodOverride { .. } | Error::InvalidRequest(_) | Error::InvalidHost { .. } => 400,
            Error::McpInvalid(McpError::TooLarge) => 413,
            Error::McpInvalid(_) => 400,
            Error::McpSessionInvalid => 404,
            Error::BodyTooLarge { .. } => 413,
            Error::UrlTooLong { .. } => 414,
            Error::HeadersTooLarge { .. } => 431,
            Error::NotFound => 404,
            Error::MethodNotAllowed => 405,
            Error::UpstreamUnavailable { .. } | Error::UpstreamError { .. } | Error::UpstreamUninspectable { .. } | Error::CredentialUnavailable { .. } => 502,
            Error::UpstreamTimeout { .. } => 504,
            Error::PolicyInvalid(_) | Error::Misconfigured(_) | Error::Internal(_) => 500,
            Error::SigV4(SigV4Error::Invalid(_)) => 403,
            Error::SigV4(_) => 400,
        }
    }

    pub fn source(&self) -> Source {
        match self {
            Error::UpstreamUnavailable { .. }
            | Error::UpstreamTimeout { .. }
            | Error::UpstreamError { .. }
            | Error::UpstreamUninspectable { .. }
            | Error::CredentialUnavailable { .. } => Source::Upstream,
            Error::PolicyInvalid(_) | Error::Misconfigured(_) | Error::Internal(_) | Error::StateUnavailable(_) => Source::Internal,
            _ => Source::Client,
        }
    }

    /// What the client is told. Fixed strings except where the text is built
    /// by Airlock from facts the client already holds.
    pub fn public_message(&self) -> String {
        match self {
            Error::InvalidSession(_) => "invalid session".into(),
            Error::AdminKeyInvalid => "invalid admin key".into(),
            Error::ToolNotAllowed { .. } => "tool not allowed for this session".into(),
            Error::RouteNotAllowed { .. } => "method and path not allowed by policy".into(),
            Error::LevelInsufficient { required, .. } => {
                format!("this request needs level {} for the tool", required.as_str())
            }
            Error::InvalidPath(_) => "ambiguous or malformed path".into(),
            Error::MethodOverride { .. } => "method-override parameters are not allowed for this tool; send the real method".into(),
            Error::InvalidRequest(msg) => msg.clone(),
            Error::BodyTooLarge { limit, .. } => {
                format!("request body larger than {limit} bytes")
            }
            Error::InvalidHost { .. } => "malformed host".into(),
            Error::HostForbidden { .. } => "this destination is never reachable through Airlock".into(),
            Error::EgressNotAllowed { .. } => "egress to this host is not allowed for this session".into(),
            Error::UrlTooLong { .. } => "request URL too long".into(),
            Error::McpInvalid(_) => "invalid MCP message".into(),
            Error::McpSessionInvalid => "unknown MCP session".into(),
            Error::HeadersTooLarge { .. } => "request headers too large".into(),
            Error::NotFound => "no such route".into(),
            Error::MethodNotAllowed => "method not allowed on this route".into(),
            Error::UpstreamUnavailable { .. } => "the tool's origin could not be reached".into(),
            Error::UpstreamTimeout { .. } => "the tool's origin did not answer in time".into(),
            Error::UpstreamError { .. } => "the tool's origin answered with a server error".into(),
            Error::UpstreamUninspectable { why: Uninspectable::Encoding(_), .. } => {
                "the tool's origin answered in a content coding Airlock cannot inspect".into()
            }
            Error::UpstreamUninspectable { why: Uninspectable::PartialContent, .. } => {
                "the tool's origin answered with a partial body, which Airlock cannot inspect".into()
            }
            Error::UpstreamUninspectable { why: Uninspectable::Index(_), .. } => "the package index could not be read and rewritten".into(),
            Error::PolicyInvalid(_) => "Airlock's policy is invalid; every request is refused until it is fixed".into(),
            Error::Misconfigured(_) => "Airlock is misconfigured for this request".into(),
            Error::CredentialUnavailable { .. } => "the tool's upstream credential could not be obtained; nothing was sent".into(),
            Error::Internal(_) => "internal error".into(),
            Error::SessionRevoked => "session revoked".into(),
            Error::SessionNotFound => "no such session".into(),
            Error::Proof(ProofError::Missing) => "this request needs an x-airlock-proof header".into(),
            Error::Proof(ProofError::Invalid) => "invalid request proof".into(),
            Error::Proof(ProofError::Stale) => "request proof timestamp outside the allowed window".into(),
            Error::Proof(ProofError::Replayed) => "request proof nonce already used".into(),
            Error::RateLimited { tool: true, .. } => "rate limit for this tool reached".into(),
            Error::RateLimited { tool: false, .. } => "rate limit for this session reached".into(),
            Error::IdempotencyKeyReused => "this Idempotency-Key was used for a different request".into(),
            Error::IdempotencyInFlight => "the first request with this Idempotency-Key has not finished".into(),
            Error::IdempotencyNotStored { .. } => "the first answer for this Idempotency-Key was too large to keep; it is not repeated".into(),
            Error::ApprovalRequired { .. } => "this request needs human approval; retry it unchanged with x-airlock-approval once approved".into(),
            Error::ApprovalPending => "approval still pending".into(),
            Error::ApprovalDenied => "approval denied".into(),
            Error::ApprovalInvalid => "approval unknown, expired, already used or for another request".into(),
            Error::ApprovalNotFound => "no such approval".into(),
            Error::ApprovalDecided { status } => format!("approval already {status}"),
            Error::ApprovalLinkInvalid => "approval link not valid".into(),
            Error::ApprovalLinkExpired { .. } => "approval link expired".into(),
            Error::ApprovalCsrf { .. } => "decision not accepted".into(),
            Error::ClientClosed => "client closed the connection".into(),
            Error::StateUnavailable(_) => "session state unavailable; the request was refused".into(),
            Error::SigV4(SigV4Error::Presigned) => "presigned URLs are not accepted".into(),
            Error::SigV4(SigV4Error::Streaming) => "aws-chunked uploads are not accepted".into(),
            Error::SigV4(SigV4Error::PayloadMismatch) => "body does not match x-amz-content-sha256".into(),
            Error::SigV4(SigV4Error::Invalid(_)) => "AWS signature not valid for this session".into(),
        }
    }

    /// Everything Airlock knows, for the audit record only. Never holds a
    /// secret: variants only carry names, numbers and Airlock's own text.
    pub fn detail(&self) -> String {
        match self {
            Error::InvalidSession(e) => format!("token: {e:?}"),
            Error::AdminKeyInvalid => "admin key missing or wrong".into(),
            Error::ToolNotAllowed { tool } => format!("tool {tool:?} unknown or not in scope"),
            Error::RouteNotAllowed { tool, method } => {
                format!("no rule of tool {tool:?} matches {method} and the path")
            }
            Error::LevelInsufficient { tool, required, granted } => {
                format!("tool {tool:?} needs {} but the session has {}", required.as_str(), granted.as_str())
            }
            Error::InvalidPath(e) => format!("path: {e:?}"),
            Error::MethodOverride { tool } => format!("tool {tool:?} does not allow a method-override query parameter"),
            Error::InvalidRequest(msg) => msg.clone(),
            Error::BodyTooLarge { limit, declared: Some(declared) } => {
                format!("declared {declared} bytes, limit {limit}")
            }
            Error::BodyTooLarge { limit, declared: None } => {
                format!("streamed body passed the limit of {limit} bytes")
            }
            Error::InvalidHost { why } => format!("host: {why:?}"),
            Error::HostForbidden { host, why } => format!("host {host:?} never reachable: {why:?}"),
            Error::EgressNotAllowed { host } => format!("host {host:?} not allowed for egress (or session has no egress)"),
            Error::UrlTooLong { len } => format!("URL of {len} bytes"),
            Error::McpInvalid(e) => format!("mcp: {e:?}"),
            Error::McpSessionInvalid => "Mcp-Session-Id not bound to this session".into(),
            Error::HeadersTooLarge { size } => format!("headers of {size} bytes"),
            Error::NotFound => "no route".into(),
            Error::MethodNotAllowed => "method not allowed on route".into(),
            Error::UpstreamUnavailable { detail } | Error::CredentialUnavailable { detail } => detail.clone(),
            Error::UpstreamTimeout { after_ms } => format!("no response after {after_ms} ms"),
            Error::UpstreamError { status, .. } => format!("origin answered {status}"),
            Error::UpstreamUninspectable { status, why } => format!("origin answered {status}, refused: {why:?}"),
            Error::PolicyInvalid(msg) => msg.clone(),
            Error::Misconfigured(msg) => msg.clone(),
            Error::Internal(msg) => msg.clone(),
            Error::StateUnavailable(msg) => msg.clone(),
            Error::RateLimited { retry_after_s, .. } => format!("retry after {retry_after_s} s"),
            Error::IdempotencyNotStored { status } => format!("first answer was {status}, body not stored"),
            Error::ApprovalRequired { id } => format!("held as {id}"),
            Error::ApprovalDecided { status } => format!("already {status}"),
            Error::ApprovalLinkExpired { exp, now } => format!("link expired at {exp}, now {now}"),
            Error::ApprovalCsrf { why } => format!("csrf: {why}"),
            Error::SigV4(SigV4Error::Invalid(why)) => why.to_string(),
            other => other.public_message(),
        }
    }

    /// The headers of the error answer beyond its JSON content type.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Error::UpstreamError { status, retry_after } => {
                let mut out = vec![("x-airlock-upstream-status", status.to_string())];
                if let Some(value) = retry_after {
                    out.push(("retry-after", value.clone()));
                }
                out
            }
            Error::UpstreamUninspectable { status, .. } => vec![("x-airlock-upstream-status", status.to_string())],
            Error::RateLimited { retry_after_s, .. } => vec![("retry-after", (*retry_after_s).min(86_400).to_string())],
            Error::IdempotencyNotStored { status } => vec![("x-airlock-original-status", status.to_string())],
            Error::ApprovalRequired { id } => vec![("x-airlock-approval-id", id.clone())],
            // Clients that keep credentials in the URL or a helper (git,
            // pip, curl --anyauth) send them only after a challenge.
            Error::InvalidSession(_) | Error::SessionRevoked => vec![("www-authenticate", CHALLENGE.into())],
            _ => Vec::new(),
        }
    }

    /// The plain-text wire body for clients that show only text to their
    /// user (git prints a `text/plain` error body as `remote: …` lines):
    /// the same code and message as the JSON body.
    pub fn text_body(&self) -> String {
        format!("airlock: {}: {}\n", self.code(), self.public_message())
    }

    /// The JSON wire body: `{"error":{"code":"…","message":"…"}}`, or for
    /// a malformed MCP message the JSON-RPC error an MCP client expects.
    pub fn wire_body(&self) -> String {
        if let Error::McpInvalid(e) = self {
            return String::from_utf8_lossy(&e.response()).into_owned();
        }
        let mut error = serde_json::json!({ "code": self.code(), "message": self.public_message() });
        if let Error::ApprovalRequired { id } = self {
            error["approval_id"] = serde_json::Value::String(id.clone());
        }
        serde_json::json!({ "error": error }).to_string()
    }
}

/// Whether a client reads errors as text only: git (`User-Agent:
/// git/…`) shows a `text/plain` body to its user and nothing of a JSON one.
pub fn wants_text(user_agent: Option<&str>) -> bool {
    user_agent.is_some_and(|ua| ua.starts_with("git/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_invalid_session_is_challenged() {
        for e in [Error::InvalidSession(TokenError::Missing), Error::InvalidSession(TokenError::Conflicting), Error::SessionRevoked] {
            assert!(e.headers().contains(&("www-authenticate", CHALLENGE.to_string())), "{e:?}");
        }
        assert_eq!(CHALLENGE, r#"Basic realm="airlock", Bearer realm="airlock""#);
        for e in [Error::AdminKeyInvalid, Error::NotFound, Error::Proof(ProofError::Missing)] {
            assert!(e.headers().iter().all(|(n, _)| *n != "www-authenticate"), "{e:?}");
        }
    }

    #[test]
    fn git_gets_the_error_as_text() {
        assert!(wants_text(Some("git/2.47.3")));
        assert!(!wants_text(Some("curl/8.0")));
        assert!(!wants_text(None));
        let e = Error::LevelInsufficient { tool: "git".into(), required: Level::Write, granted: Level::Read };
        let text = e.text_body();
        assert!(text.starts_with(&format!("airlock: {}: ", e.code())), "{text}");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn every_token_failure_has_the_same_wire_body() {
        let bodies: Vec<String> = [
            TokenError::Malformed,
            TokenError::Conflicting,
            TokenError::UnknownKey,
            TokenError::BadMac,
            TokenError::BadClaims,
            TokenError::Expired { exp: 1, now: 99 },
            TokenError::NotYetValid { iat: 99, now: 1 },
            TokenError::WrongAudience,
        ]
        .into_iter()
        .map(|e| Error::InvalidSession(e).wire_body())
        .collect();
        assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
        assert_eq!(bodies[0], r#"{"error":{"code":"invalid_session","message":"invalid session"}}"#);
    }

    #[test]
    fn unknown_and_out_of_scope_tools_look_the_same() {
        let a = Error::ToolNotAllowed { tool: "github".into() };
        let b = Error::ToolNotAllowed { tool: "no-such-tool".into() };
        assert_eq!(a.wire_body(), b.wire_body());
        assert_eq!(a.status(), 403);
        assert!(!a.wire_body().contains("github"));
    }

    #[test]
    fn internal_detail_never_reaches_the_wire() {
        let cases = [
            Error::UpstreamUnavailable { detail: "dns failure for internal-host.corp".into() },
            Error::PolicyInvalid("tools.x.credential.secret: missing".into()),
            Error::Misconfigured("secret GITHUB_TOKEN is not set".into()),
            Error::Internal("boom at src/edge.rs".into()),
            Error::CredentialUnavailable { detail: "tool \"gh\": token endpoint answered 400 (invalid_grant)".into() },
        ];
        for e in cases {
            let body = e.wire_body();
            assert!(!body.contains(&e.detail()), "{body}");
            assert!(e.status() >= 500);
        }
    }

    #[test]
    fn method_override_is_a_client_error_without_detail_on_the_wire() {
        let e = Error::MethodOverride { tool: "github".into() };
        assert_eq!((e.code(), e.status(), e.source()), ("method_override_not_allowed", 400, Source::Client));
        assert!(!e.wire_body().contains("github"));
        assert!(e.detail().contains("github"));
        let p = Error::InvalidPath(PathError::CompatibilityForm);
        assert_eq!((p.code(), p.status()), ("invalid_path", 400));
        assert_eq!(p.wire_body(), Error::InvalidPath(PathError::DotSegment).wire_body());
    }

    #[test]
    fn approval_page_refusals_have_stable_codes() {
        let table: &[(Error, u16, &str)] = &[
            (Error::ApprovalLinkInvalid, 404, "approval_link_invalid"),
            (Error::ApprovalLinkExpired { exp: 1, now: 2 }, 410, "approval_link_expired"),
            (Error::ApprovalCsrf { why: "token wrong" }, 403, "approval_csrf_failed"),
            (Error::ClientClosed, 499, "client_closed"),
        ];
        for (e, status, code) in table {
            assert_eq!((e.status(), e.code(), e.source()), (*status, *code, Source::Client));
            assert!(!e.wire_body().contains("token wrong"));
        }
    }

    #[test]
    fn sources_are_tagged() {
        assert_eq!(Error::UpstreamTimeout { after_ms: 1 }.source(), Source::Upstream);
        assert_eq!(Error::UpstreamTimeout { after_ms: 1 }.status(), 504);
        assert_eq!(Error::NotFound.source(), Source::Client);
        assert_eq!(Error::Internal(String::new()).source(), Source::Internal);
    }
}
