//! Parse: which of Airlock's routes a request path addresses.
//!
//! Invariant: routing looks only at the raw path; a tool request's remainder
//! is handed on still encoded, to be normalized exactly once by [`crate::path`].

/// A routed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    Health,
    Sessions,
    /// `/t/{tool}/{rest}`: `rest` starts with `/` and is still percent-encoded.
    Tool { tool: &'a str, rest: &'a str },
    NotFound,
}

/// Routes a raw request path (no query).
pub fn route(path: &str) -> Route<'_> {
    match path {
        "/v1/health" => return Route::Health,
        "/v1/sessions" => return Route::Sessions,
        _ => {}
    }
    let Some(after) = path.strip_prefix("/t/") else {
        return Route::NotFound;
    };
    let (tool, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    if tool.is_empty() {
        return Route::NotFound;
    }
    Route::Tool { tool, rest }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let table: &[(&str, Route)] = &[
            ("/v1/health", Route::Health),
            ("/v1/sessions", Route::Sessions),
            ("/v1/sessions/", Route::NotFound),
            ("/t/github/repos/o/r", Route::Tool { tool: "github", rest: "/repos/o/r" }),
            ("/t/github", Route::Tool { tool: "github", rest: "/" }),
            ("/t/github/", Route::Tool { tool: "github", rest: "/" }),
            ("/t/gh/a%2fb", Route::Tool { tool: "gh", rest: "/a%2fb" }),
            ("/t/", Route::NotFound),
            ("/t//x", Route::NotFound),
            ("/", Route::NotFound),
            ("/tools/x", Route::NotFound),
        ];
        for (path, want) in table {
            assert_eq!(&route(path), want, "{path}");
        }
    }
}
