#!/usr/bin/env python3
"""Connect the official MCP Python SDK to an MCP server brokered by Airlock.

    AIRLOCK_SESSION_TOKEN=<session token> \\
      .venv-mcp/bin/python clients/python/airlock_mcp_client.py \\
        --url http://127.0.0.1:8787/mcp/docs \\
        --call 'search:{"query": "rotation"}' --call 'create_page:{"title": "x"}' \\
        --read docs://public/readme --prompt 'summarize:{"topic": "search"}'

The session token is read from the environment (AIRLOCK_SESSION_TOKEN), never
from the command line, and sent as `Authorization: Bearer <token>` (or as the
password of Basic auth with --basic). The client initializes a session, lists
tools, resources and prompts, runs the calls, reads and prompts it was given,
and prints one JSON summary on stdout:

    {"ok": true, "protocol_version": ..., "server_info": {...},
     "session_id": "<the Mcp-Session-Id Airlock handed out>",
     "tools": [...], "resources": [...], "prompts": [...],
     "calls":   [{"tool": ..., "result": {"is_error": false, "text": ...}}
                 | {"tool": ..., "error": {"code": -32602, "message": "Tool not found"}}],
     "reads":   [{"uri": ..., "text": ...} | {"uri": ..., "error": {...}}],
     "prompts_get": [{"name": ..., "text": ...} | {"name": ..., "error": {...}}],
     "logs": [...]}

A JSON-RPC error of one call is recorded in the summary; a failure to connect
prints {"ok": false, "error": ...} and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from datetime import timedelta
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError


def _split(spec: str) -> tuple[str, dict[str, Any]]:
    """'name' or 'name:{json}' -> (name, dict)."""
    name, sep, rest = spec.partition(":")
    return name, (json.loads(rest) if sep and rest.strip() else {})


def _text(content: list[Any]) -> str:
    return "\n".join(getattr(c, "text", "") or "" for c in content)


def _error(e: McpError) -> dict[str, Any]:
    return {"code": e.error.code, "message": e.error.message}


async def run(args: argparse.Namespace, token: str) -> dict[str, Any]:
    if args.basic:
        auth = "Basic " + base64.b64encode(f"sandbox:{token}".encode()).decode()
    else:
        auth = f"Bearer {token}"
    logs: list[Any] = []

    async def on_log(params: Any) -> None:
        logs.append(params.data)

    summary: dict[str, Any] = {"ok": True}
    # The SDK's recommended timeouts: 30 s, and 300 s for reading a stream.
    timeout = httpx.Timeout(30.0, read=300.0)
    async with httpx.AsyncClient(headers={"Authorization": auth}, timeout=timeout) as http:
        async with streamable_http_client(args.url, http_client=http) as (read, write, get_session_id):
            async with ClientSession(
                read,
                write,
                read_timeout_seconds=timedelta(seconds=args.timeout),
                logging_callback=on_log,
            ) as session:
                init = await session.initialize()
                summary["protocol_version"] = init.protocolVersion
                summary["server_info"] = {"name": init.serverInfo.name, "version": init.serverInfo.version}
                summary["session_id"] = get_session_id()
                summary["tools"] = sorted(t.name for t in (await session.list_tools()).tools)
                summary["resources"] = sorted(str(r.uri) for r in (await session.list_resources()).resources)
                summary["prompts"] = sorted(p.name for p in (await session.list_prompts()).prompts)

                calls = []
                for spec in args.call:
                    name, arguments = _split(spec)
                    entry: dict[str, Any] = {"tool": name, "arguments": arguments}
                    try:
                        r = await session.call_tool(name, arguments)
                        entry["result"] = {"is_error": bool(r.isError), "text": _text(r.content)}
                    except McpError as e:
                        entry["error"] = _error(e)
                    calls.append(entry)
                summary["calls"] = calls

                reads = []
                for uri in args.read:
                    entry = {"uri": uri}
                    try:
                        r = await session.read_resource(uri)
                        entry["text"] = "\n".join(getattr(c, "text", "") or "" for c in r.contents)
                    except McpError as e:
                        entry["error"] = _error(e)
                    reads.append(entry)
                summary["reads"] = reads

                got = []
                for spec in args.prompt:
                    name, arguments = _split(spec)
                    entry = {"name": name}
                    try:
                        r = await session.get_prompt(name, {k: str(v) for k, v in arguments.items()})
                        entry["text"] = "\n".join(getattr(m.content, "text", "") or "" for m in r.messages)
                    except McpError as e:
                        entry["error"] = _error(e)
                    got.append(entry)
                summary["prompts_get"] = got
                summary["logs"] = logs
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("AIRLOCK_MCP_URL"), help="Airlock's /mcp/{server} URL")
    p.add_argument("--basic", action="store_true", help="send the token as a Basic auth password")
    p.add_argument("--call", action="append", default=[], metavar="TOOL[:JSON]")
    p.add_argument("--read", action="append", default=[], metavar="URI")
    p.add_argument("--prompt", action="append", default=[], metavar="NAME[:JSON]")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for each answer")
    args = p.parse_args()
    token = os.environ.get("AIRLOCK_SESSION_TOKEN", "")
    if not args.url or not token:
        print(json.dumps({"ok": False, "error": "need --url (or AIRLOCK_MCP_URL) and AIRLOCK_SESSION_TOKEN"}))
        return 2
    try:
        summary = asyncio.run(run(args, token))
    except BaseException as e:  # noqa: BLE001 - report anything as JSON
        if isinstance(e, KeyboardInterrupt):
            raise
        # anyio wraps failures in exception groups; report the innermost
        while isinstance(e, BaseExceptionGroup) and e.exceptions:
            e = e.exceptions[0]
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
