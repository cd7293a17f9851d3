//! Session state: pure state machines over a [`store::Store`], `now` passed in.
//!
//! Invariant: nothing here touches a clock or the platform. The Durable
//! Object (`edge/object.rs`, the `airlock-state` script) is a thin shell: it decodes one [`Command`], runs
//! [`run`] against its SQLite-backed store in one synchronous step (so
//! commands never interleave) and returns the [`Reply`]. Every command
//! purges expired entries first.

pub mod approvals;
pub mod bucket;
pub mod nonces;
pub mod outbox;
pub mod session;
pub mod sessions_index;
pub mod store;
pub mod tokens;
pub mod trail;
pub mod wire;

use serde::{Deserialize, Serialize};

use store::{Store, StoreError};

/// What the worker hands the new session's object to mint it: the request
/// body (base64: any bytes, checked there), the policy and signing keys as
/// configured (JSON and the `kid:key` list), and the session id it drew
/// (32 hex digits; the object's name derives from it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintCall {
    pub body: String,
    pub policy: String,
    pub keys: String,
    pub session_id: String,
}

/// Never prints the signing keys.
impl std::fmt::Debug for MintCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintCall").field("session_id", &self.session_id).field("body_bytes", &self.body.len()).finish_non_exhaustive()
    }
}

/// One typed command, as the edge sends it to a state object.
// A command is built once per call and serialized at once: boxing the
// held approval would only add code.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Mints a session in its own object (named by `session_id`), which
    /// creates the record before anything is answered; run by the object
    /// itself (`crate::mint::serve`): as a pure step it is refused.
    Mint(MintCall),
    /// A record created by a worker of an earlier release (which minted
    /// itself), answered [`Reply::Created`]: kept so that a deployment
    /// upgrading the state script first keeps minting until the worker
    /// follows. Never sent by this release.
    #[serde(skip_serializing)]
    Create {
        record: session::SessionRecord,
    },
    Get,
    Revoke,
    /// Revocation, replay and rate limits for one request; first appends
    /// `trail`, audit lines of the session's earlier requests (as
    /// [`Command::Append`]) that ride on the admission instead of a call
    /// of their own.
    Admit {
        admission: session::Admission,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        trail: String,
    },
    IdemBegin {
        key: String,
        digest: String,
        expires_s: u64,
    },
    IdemComplete {
        key: String,
        digest: String,
        answer: session::StoredAnswer,
        expires_s: u64,
    },
    IdemAbort {
        key: String,
        digest: String,
    },
    /// Holds a request; `notify` (when the policy has a webhook) queues
    /// its events.
    Hold {
        approval: approvals::Approval,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        notify: Option<outbox::Notify>,
    },
    /// The approval `id` once it is decided or after `wait_s` seconds,
    /// whichever comes first (the object keeps the call open; as a pure
    /// step it answers at once, like [`Command::Approval`]).
    Wait {
        id: String,
        wait_s: u64,
    },
    Consume {
        id: String,
        digest: String,
    },
    Approval {
        id: String,
    },
    Pending,
    Decide {
        id: String,
        approve: bool,
        approver: String,
    },
    /// The sessions index (object [`sessions_index::INDEX_OBJECT`]): a new
    /// session's row; a page, and an agent's active sessions, for the raw
    /// query (parsed here); rows to mark revoked.
    /// The row as the new session's object wrote it
    /// ([`Reply::Minted`]'s `entry`, a JSON string): the worker passes it
    /// on unread. A worker of an earlier release sends the session record
    /// itself (an object), which is read too.
    IndexPut(serde_json::Value),
    IndexList(String),
    IndexAgent(String),
    IndexRevoked(Vec<sessions_index::Revoked>),
    /// A session's audit trail: append logged lines (one per line, in
    /// order); read it.
    Append(String),
    Trail,
    /// A request to the approval page, answered by the approvals object
    /// itself (see `crate::approval::serve`); as a pure step it is
    /// refused.
    Page(approvals::PageRequest),
    /// An upstream-token cache ([`tokens`]): the token of the tool's
    /// minted `credential` (the policy's JSON of it) for a session at
    /// `level` on `repos`. The object answers from its cache or mints (one
    /// mint at a time, other asks held open up to `wait_s`); as a pure
    /// step it cannot mint and answers a failure.
    Token {
        tool: String,
        credential: String,
        level: crate::level::Level,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        repos: Vec<String>,
        wait_s: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// A session minted: the answer's JSON for the control plane (token,
    /// ids, proof key), who it is for, its expiry, and its sessions-index
    /// row as JSON.
    Minted {
        body: String,
        agent: String,
        user: String,
        expires_at: u64,
        entry: String,
    },
    /// The answer to an earlier release's [`Command::Create`].
    Created {
        created: bool,
    },
    Session {
        session: Option<session::SessionView>,
    },
    /// `trail`: whether the admission's trail lines were stored (`None`
    /// when it carried none, or from a state script of an earlier release,
    /// which does not read them).
    Admitted {
        refusal: Option<session::Refusal>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trail: Option<bool>,
    },
    Idem {
        outcome: session::IdemBegin,
    },
    Done,
    Approval {
        approval: Option<approvals::Approval>,
    },
    Consumed {
        result: Result<String, approvals::Refusal>,
    },
    Pending {
        approvals: Vec<approvals::Approval>,
    },
    Decided {
        decided: approvals::Decided,
    },
    /// A control-plane answer rendered here as JSON, passed on as is by the
    /// worker (which never parses it): a page of the index, or a trail
    /// (`null` for an unknown session).
    Listed(String),
    /// The control-plane request's own fault (400), in words.
    Refused(String),
    /// An agent (its name, its active sessions as (session id, created_at in
    /// decimal), at most [`sessions_index::MAX_AGENT_REVOKE`], and whether
    /// there are more). Pairs of strings: the worker already decodes those.
    Agent(String, Vec<(String, String)>, bool),
    /// The approval page to answer with.
    Page(approvals::PageAnswer),
    /// The store failed: the caller must refuse the request.
    Failed,
    /// An upstream-token cache's answer to [`Command::Token`].
    Token(tokens::Answer),
}

/// What became of the audit lines an admission carried, read from its
/// reply (`None`: the call failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    Stored,
    /// A state script of an earlier release does not read them: they are
    /// to be sent as an append.
    Ignored,
    /// Not stored: logged as a failed append.
    Lost,
}

impl Carried {
    pub fn of(reply: Option<&Reply>) -> Carried {
        match reply {
            Some(Reply::Admitted { trail: Some(true), .. }) => Carried::Stored,
            Some(Reply::Admitted { trail: None, .. }) => Carried::Ignored,
            _ => Carried::Lost,
        }
    }
}

/// Runs one command against `store` at `now_ms`.
pub fn run(store: &mut impl Store, command: Command, now_ms: u64) -> Reply {
    step(store, command, now_ms).unwrap_or(Reply::Failed)
}

fn step(store: &mut impl Store, command: Command, now_ms: u64) -> Result<Reply, StoreError> {
    let now_s = now_ms / 1000;
    store.purge(now_s)?;
    Ok(match command {
        Command::Mint(_) => Reply::Refused("a session is minted by its own state object".into()),
        Command::Create { record } => Reply::Created { created: session::create(store, &record)? },
        Command::Get => Reply::Session { session: session::get(store, now_s)? },
        Command::Revoke => Reply::Session { session: session::revoke(store, now_s)? },
        Command::Admit { admission, trail: lines } => {
            // The lines are stored whatever the admission decides; a store
            // fault there is reported, not a refusal of this request.
            let stored = (!lines.is_empty()).then(|| trail::append_lines(store, &lines).is_ok());
            Reply::Admitted { refusal: session::admit(store, &admission, now_ms)?, trail: stored }
        }
        Command::IdemBegin { key, digest, expires_s } => Reply::Idem { outcome: session::idem_begin(store, &key, &digest, expires_s)? },
        Command::IdemComplete { key, digest, answer, expires_s } => {
            session::idem_complete(store, &key, &digest, answer, expires_s)?;
            Reply::Done
        }
        Command::IdemAbort { key, digest } => {
            session::idem_abort(store, &key, &digest)?;
            Reply::Done
        }
        Command::Hold { approval, notify } => {
            let new_id = approval.approval_id.clone();
            let held = approvals::hold(store, approval, now_s)?;
            if let (Some(notify), true) = (notify, held.approval_id == new_id) {
                outbox::on_hold(store, &held, &notify, now_ms)?;
            }
            Reply::Approval { approval: approvals::get(store, &held.approval_id, now_s)? }
        }
        Command::Wait { id, .. } => Reply::Approval { approval: approvals::get(store, &id, now_s)? },
        Command::Consume { id, digest } => Reply::Consumed { result: approvals::consume(store, &id, &digest, now_s)? },
        Command::Approval { id } => Reply::Approval { approval: approvals::get(store, &id, now_s)? },
        Command::Pending => Reply::Pending { approvals: approvals::pending(store, now_s)? },
        Command::Decide { id, approve, approver } => {
            let decided = approvals::decide(store, &id, approve, &approver, now_s)?;
            if let approvals::Decided::Done(a) = &decided {
                outbox::on_decided(store, a, now_ms)?;
            }
            Reply::Decided { decided }
        }
        Command::IndexPut(entry) => {
            let row = match entry {
                serde_json::Value::String(row) => serde_json::from_str(&row).ok(),
                record => serde_json::from_value(record).ok().map(|r: session::SessionRecord| sessions_index::IndexRow::of(&r)),
            };
            match row {
                Some(row) => {
                    sessions_index::put(store, &row)?;
                    Reply::Done
                }
                None => Reply::Refused("not a sessions-index row".into()),
            }
        }
        Command::IndexList(query) => sessions_index::list_query(store, &query, now_s)?,
        Command::IndexAgent(query) => sessions_index::agent_active(store, &query, now_s)?,
        Command::IndexRevoked(revoked) => {
            sessions_index::revoked(store, &revoked)?;
            Reply::Done
        }
        Command::Append(lines) => {
            trail::append_lines(store, &lines)?;
            Reply::Done
        }
        Command::Token { .. } => Reply::Token(tokens::Answer::Failed { misconfigured: false, detail: "minting runs in the state object".into() }),
        Command::Page(_) => Reply::Refused("the approval page is served by the approvals object".into()),
        Command::Trail => Reply::Listed(serde_json::to_string(&trail::read(store)?).map_err(|_| StoreError)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::MemStore;

    #[test]
    fn commands_round_trip_the_wire_format() {
        let cmd = Command::IdemBegin { key: "k".into(), digest: "d".into(), expires_s: 9 };
        let wire = serde_json::to_string(&cmd).unwrap();
        assert_eq!(serde_json::from_str::<Command>(&wire).unwrap(), cmd);
        let reply = Reply::Admitted { refusal: Some(session::Refusal::RateLimited { tool: true, retry_after_s: 3 }), trail: None };
        assert_eq!(serde_json::from_str::<Reply>(&serde_json::to_string(&reply).unwrap()).unwrap(), reply);
    }

    /// What a worker of the release before sessions were minted in their
    /// own object sends, while the state script is already upgraded: its
    /// record is created and listed as before.
    #[test]
    fn an_earlier_workers_create_and_index_commands_are_still_read() {
        let record = r#"{"session_id":"00000000000000000000000000000001","agent":"a","user":"u","tools":{"echo":"read"},"egress":false,"created_at":1,"expires_at":2000,"revoked_at":null,"usage":{"requests":0,"denied":0,"rate_limited":0,"last_seen_at":null},"buckets":{}}"#;
        let create: Command = serde_json::from_str(&format!(r#"{{"create":{{"record":{record}}}}}"#)).unwrap();
        let mut session = MemStore::new();
        assert_eq!(run(&mut session, create.clone(), 1_000), Reply::Created { created: true });
        assert_eq!(run(&mut session, create.clone(), 1_000), Reply::Created { created: false });
        assert!(matches!(run(&mut session, Command::Get, 1_000), Reply::Session { session: Some(_) }));
        // This release never sends it.
        assert!(serde_json::to_string(&create).is_err());

        let mut index = MemStore::new();
        let legacy: Command = serde_json::from_str(&format!(r#"{{"index_put":{record}}}"#)).unwrap();
        assert_eq!(run(&mut index, legacy, 1_000), Reply::Done);
        let row = serde_json::to_string(&sessions_index::IndexRow { session_id: "00000000000000000000000000000002".into(), ..sample_row() }).unwrap();
        assert_eq!(run(&mut index, Command::IndexPut(serde_json::Value::String(row)), 1_000), Reply::Done);
        let Reply::Listed(page) = run(&mut index, Command::IndexList(String::new()), 1_000) else { panic!("no page") };
        assert!(page.contains("00000000000000000000000000000001") && page.contains("00000000000000000000000000000002"), "{page}");
        for bad in [serde_json::Value::String("{".into()), serde_json::json!({"session_id": 1}), serde_json::json!(7)] {
            assert!(matches!(run(&mut index, Command::IndexPut(bad), 1_000), Reply::Refused(_)));
        }
    }

    /// Audit lines carried by an admission are stored before it is
    /// decided, whatever it decides, exactly as an append stores them; an
    /// admission that carries none stores nothing and says nothing of it.
    #[test]
    fn an_admission_stores_the_trail_lines_it_carries() {
        let record = r#"{"session_id":"00000000000000000000000000000001","agent":"a","user":"u","tools":{"echo":"read"},"egress":false,"created_at":1,"expires_at":2000,"revoked_at":null,"usage":{"requests":0,"denied":0,"rate_limited":0,"last_seen_at":null},"buckets":{}}"#;
        let fresh = || {
            let mut s = MemStore::new();
            let create: Command = serde_json::from_str(&format!(r#"{{"create":{{"record":{record}}}}}"#)).unwrap();
            run(&mut s, create, 1_000);
            s
        };
        let line = |n: u64| format!(r#"{{"kind":"airlock.audit","request_id":"r{n}","decision":"allow"}}"#);
        let lines = (0..3).map(line).collect::<Vec<_>>().join("\n");
        let (mut carried, mut appended) = (fresh(), fresh());
        let admit = |trail: &str| Command::Admit { admission: Default::default(), trail: trail.into() };
        assert_eq!(run(&mut carried, admit(&lines), 1_000), Reply::Admitted { refusal: None, trail: Some(true) });
        assert_eq!(run(&mut appended, Command::Append(lines.clone()), 1_000), Reply::Done);
        assert_eq!(run(&mut appended, admit(""), 1_000), Reply::Admitted { refusal: None, trail: None });
        assert_eq!(carried.dump(), appended.dump());
        // A revoked session refuses the request and still keeps the lines.
        run(&mut carried, Command::Revoke, 1_000);
        let refused = run(&mut carried, admit(&line(3)), 1_000);
        assert_eq!(refused, Reply::Admitted { refusal: Some(session::Refusal::Revoked), trail: Some(true) });
        let Reply::Listed(trail) = run(&mut carried, Command::Trail, 1_000) else { panic!("no trail") };
        let trail: serde_json::Value = serde_json::from_str(&trail).unwrap();
        assert_eq!(trail["records"].as_array().map(Vec::len), Some(4), "{trail}");
        // What the worker makes of the reply, including an earlier
        // release's, which has no `trail`.
        assert_eq!(Carried::of(Some(&refused)), Carried::Stored);
        assert_eq!(Carried::of(Some(&Reply::Admitted { refusal: None, trail: Some(false) })), Carried::Lost);
        let earlier = wire::decode_reply(br#"{"admitted":{"refusal":null}}"#);
        assert_eq!(Carried::of(earlier.as_ref()), Carried::Ignored);
        assert_eq!(Carried::of(Some(&Reply::Failed)), Carried::Lost);
        assert_eq!(Carried::of(None), Carried::Lost);
        // On the wire, an admission without lines is what earlier releases sent.
        assert_eq!(serde_json::to_string(&admit("")).unwrap(), r#"{"admit":{"admission":{"tool":null,"nonce":null,"session_rate":null,"tool_rate":null}}}"#);
    }

    fn sample_row() -> sessions_index::IndexRow {
        sessions_index::IndexRow {
            session_id: String::new(),
            agent: "b".into(),
            user: "v".into(),
            tools: Default::default(),
            egress: true,
            created_at: 2,
            expires_at: 3_000,
            revoked_at: None,
        }
    }

    #[test]
    fn a_failing_store_answers_failed_for_every_command() {
        let mut s = MemStore::new();
        s.broken = true;
        for cmd in [Command::Get, Command::Revoke, Command::Pending, Command::Admit { admission: Default::default(), trail: String::new() }] {
            assert_eq!(run(&mut s, cmd, 1_000), Reply::Failed);
        }
    }
}
