#!/usr/bin/env python3
"""Connect the official MCP Python SDK 2.x to an MCP server brokered by
Airlock, speaking only the stateless 2026-07-28 protocol (no fallback to the
initialize handshake).

    AIRLOCK_SESSION_TOKEN=<session token> \\
      .venv-mcp2/bin/python clients/python/airlock_mcp2_client.py \\
        --url http://127.0.0.1:8787/mcp/docs2 --discover --lists \\
        --call 'search:{"query": "rotation", "region": "us-west1"}' \\
        --read docs://public/readme --prompt 'summarize:{"topic": "x"}' \\
        --mrtr 'deploy:{"env": "staging"}' --listen \\
        --gated 'create_page:{"title": "x"}' --dedupe 'book_slot:{"slot": "9am"}'

The session token is read from the environment (AIRLOCK_SESSION_TOKEN) and
sent as `Authorization: Bearer <token>`. Prints one JSON summary on stdout:

    {"ok": true, "protocol_version": "2026-07-28",
     "discover": {"capabilities": [...], "cache_scope": ...} (with --discover),
     "tools"/"resources"/"prompts": [...], "cache_scopes": {...} (with --lists),
     "calls": [{"tool": ..., "result": {...}} | {"tool": ..., "error": {"code": ..., "message": ...}}],
     "reads": [...], "prompts_get": [...],
     "mrtr": [{"tool": ..., "first": {...}, "final": {...}}],
     "gated": [{"tool": ..., "first": {...}, "pending": {...}, "final": {...}, "again": {...}}],
     "dedupe": [{"text": ...} | {"error": {...}}, ...],
     "listen": {"honored": {...}, "events": [...]}}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import anyio
import httpx2
import mcp.types as types
from mcp import MCPError
from mcp.client import Client, ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

VERSION = "2026-07-28"


def _split(spec: str) -> tuple[str, dict[str, Any]]:
    name, sep, rest = spec.partition(":")
    return name, (json.loads(rest) if sep and rest.strip() else {})


def _text(content: list[Any]) -> str:
    return "\n".join(getattr(c, "text", "") or "" for c in content)


def _error(e: MCPError) -> dict[str, Any]:
    return {"code": e.error.code, "message": e.error.message}


async def _on_elicit(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"confirm": True})


async def run(args: argparse.Namespace, token: str) -> dict[str, Any]:
    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(20.0, read=20.0))
    out: dict[str, Any] = {"ok": True}
    async with http, Client(
        streamable_http_client(args.url, http_client=http, terminate_on_close=False),
        mode=VERSION,
        elicitation_callback=_on_elicit,
        cache=None,
    ) as client:
        session = client.session
        out["protocol_version"] = client.protocol_version
        if args.discover:
            # The raw result: the pinned Client adopted a synthesized one.
            d = await session.send_discover(VERSION)
            out["discover"] = {
                "capabilities": sorted(d.get("capabilities") or {}),
                "cache_scope": d.get("cacheScope"),
                "supported_versions": d.get("supportedVersions"),
            }
        if args.lists:
            tools = await session.list_tools()
            resources = await session.list_resources()
            prompts = await session.list_prompts()
            out["tools"] = sorted(t.name for t in tools.tools)
            out["resources"] = sorted(str(r.uri) for r in resources.resources)
            out["prompts"] = sorted(p.name for p in prompts.prompts)
            out["cache_scopes"] = {"tools": tools.cache_scope, "resources": resources.cache_scope, "prompts": prompts.cache_scope}
        out["calls"] = []
        for spec in args.call:
            name, arguments = _split(spec)
            try:
                r = await client.call_tool(name, arguments)
                out["calls"].append({"tool": name, "result": {"is_error": bool(r.is_error), "text": _text(r.content)}})
            except MCPError as e:
                out["calls"].append({"tool": name, "error": _error(e)})
        out["reads"] = []
        for uri in args.read:
            try:
                r = await client.read_resource(uri)
                out["reads"].append({"uri": uri, "text": "".join(getattr(c, "text", "") for c in r.contents)})
            except MCPError as e:
                out["reads"].append({"uri": uri, "error": _error(e)})
        out["prompts_get"] = []
        for spec in args.prompt:
            name, arguments = _split(spec)
            try:
                r = await client.get_prompt(name, arguments)
                out["prompts_get"].append({"name": name, "text": " ".join(getattr(m.content, "text", "") for m in r.messages)})
            except MCPError as e:
                out["prompts_get"].append({"name": name, "error": _error(e)})
        out["mrtr"] = []
        for spec in args.mrtr:
            name, arguments = _split(spec)
            entry: dict[str, Any] = {"tool": name}
            try:
                first = await session.call_tool(name, arguments, allow_input_required=True)
                if isinstance(first, types.InputRequiredResult):
                    reqs = first.input_requests or {}
                    entry["first"] = {
                        "input_required": True,
                        "keys": sorted(reqs),
                        "messages": [getattr(r.params, "message", None) for r in reqs.values()],
                        "has_state": first.request_state is not None,
                    }
                    responses: types.InputResponses = {"confirm": types.ElicitResult(action="accept", content={"confirm": True})}
                    final = await session.call_tool(
                        name, arguments, input_responses=responses, request_state=first.request_state, allow_input_required=True
                    )
                    entry["final"] = {"text": _text(getattr(final, "content", []))}
                else:
                    entry["first"] = {"input_required": False, "text": _text(first.content)}
            except MCPError as e:
                entry["error"] = _error(e)
            out["mrtr"].append(entry)
        out["gated"] = []
        for spec in args.gated:
            out["gated"].append(await _gated(session, *_split(spec)))
        if args.dedupe:
            name, arguments = _split(args.dedupe)

            async def one() -> dict[str, Any]:
                try:
                    r = await client.call_tool(name, arguments)
                    return {"text": _text(r.content)}
                except MCPError as e:
                    return {"error": _error(e)}

            out["dedupe"] = await asyncio.gather(*(one() for _ in range(args.dedupe_count)))
        if args.listen:
            events: list[dict[str, Any]] = []
            async with client.listen(
                tools_list_changed=True, resource_subscriptions=["docs://public/readme", "docs://private/salaries"]
            ) as sub:
                honored = sub.honored.model_dump(exclude_none=True, by_alias=True) if sub.honored else None
                await client.call_tool("touch", {})

                async def collect() -> None:
                    async for event in sub:
                        events.append({"type": type(event).__name__, "uri": str(getattr(event, "uri", "") or "")})

                try:
                    await asyncio.wait_for(collect(), timeout=args.listen_seconds)
                except asyncio.TimeoutError:
                    pass
            out["listen"] = {"honored": honored, "events": events}
    return out


def _asked(result: Any) -> dict[str, Any]:
    """What an input_required result asks: its keys, modes and URLs."""
    reqs = result.input_requests or {}
    return {
        "input_required": True,
        "keys": sorted(reqs),
        "modes": [getattr(r.params, "mode", None) for r in reqs.values()],
        "urls": [getattr(r.params, "url", None) for r in reqs.values()],
        "state": result.request_state,
    }


async def _gated(session: Any, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """An approval round trip, driven by hand: the call, a retry while the
    approval is pending, then (after the line `approved` arrives on stdin,
    once the test decided) the retry that passes and a second retry with
    the same state. Prints {"stage": "approve", "url": ...} when it waits."""
    entry: dict[str, Any] = {"tool": name}

    async def call(state: str | None, responses: Any = None) -> Any:
        try:
            r = await session.call_tool(name, arguments, input_responses=responses, request_state=state, allow_input_required=True)
        except MCPError as e:
            return {"error": _error(e)}
        if isinstance(r, types.InputRequiredResult):
            return _asked(r)
        return {"text": _text(r.content)}

    first = entry["first"] = await call(None)
    if not first.get("input_required"):
        return entry
    accept = {k: types.ElicitResult(action="accept") for k in first["keys"]}
    pending = entry["pending"] = await call(first["state"], accept)
    state = pending.get("state") or first["state"]
    print(json.dumps({"stage": "approve", "url": first["urls"][0]}), flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)
    entry["final"] = await call(state, accept)
    entry["again"] = await call(state, accept)
    return entry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--discover", action="store_true")
    p.add_argument("--lists", action="store_true")
    p.add_argument("--call", action="append", default=[])
    p.add_argument("--read", action="append", default=[])
    p.add_argument("--prompt", action="append", default=[])
    p.add_argument("--mrtr", action="append", default=[])
    p.add_argument("--gated", action="append", default=[])
    p.add_argument("--dedupe", default=None, help="tool:{json}, called --dedupe-count times at once")
    p.add_argument("--dedupe-count", type=int, default=20)
    p.add_argument("--listen", action="store_true")
    p.add_argument("--listen-seconds", type=float, default=1.5)
    args = p.parse_args()
    token = os.environ.get("AIRLOCK_SESSION_TOKEN", "")
    try:
        summary = asyncio.run(run(args, token))
    except BaseException as e:  # one line of JSON whatever failed
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
        sys.exit(1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
