"""wrk (the Debian package) driven by small Lua scripts; its text report is parsed into a :class:`WrkResult`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}

# Every request is built once in init() and then cycled: the client spends its CPU on sockets, not Lua.
GET_SCRIPT = """
local ids = {%(ids)s}
local auth = %(auth)s
local reqs = {}
local i = 0
function init(args)
  for k, id in ipairs(ids) do
    reqs[k] = wrk.format("GET", "/api/v1/customers/" .. id, {["Authorization"] = auth, ["Host"] = wrk.headers["Host"]})
  end
end
function request()
  i = i + 1
  if i > #reqs then i = 1 end
  return reqs[i]
end
"""

# Unique phone numbers per thread and counter: +86 13<run><thread><7-digit counter> (valid mainland mobiles).
POST_SCRIPT = """
local auth = %(auth)s
local store = %(store)s
local next_tid = 0
local counter = 0
local run = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
function init(args)
  run = tonumber(args[1] or "0")
end
function request()
  counter = counter + 1
  local phone = string.format("+8613%%d%%d%%07d", run, tid, counter)
  local body = '{"store_id":"' .. store .. '","name":"压测客户","phones":[{"number":"' .. phone .. '"}]}'
  return wrk.format("POST", "/api/v1/customers",
                    {["Authorization"] = auth, ["Content-Type"] = "application/json", ["Host"] = wrk.headers["Host"]},
                    body)
end
"""


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for these ASCII values


def write_get_script(path: Path, ids: list[str], token: str) -> Path:
    path.write_text(GET_SCRIPT % {"ids": ", ".join(lua_string(i) for i in ids), "auth": lua_string(f"Bearer {token}")})
    return path


def write_post_script(path: Path, store_id: str, token: str) -> Path:
    path.write_text(POST_SCRIPT % {"auth": lua_string(f"Bearer {token}"), "store": lua_string(store_id)})
    return path


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    raw: str

    @property
    def ok_rps(self) -> float:
        """Successful responses per second (wrk's Requests/sec counts error statuses too)."""
        return (self.requests - self.non_2xx) / self.seconds if self.seconds else 0.0


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unparsable wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse(output: str) -> WrkResult:
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", output)
    if not m:
        raise ValueError(f"unparsable wrk output:\n{output}")
    requests, seconds = int(m.group(1)), _ms(m.group(2) + m.group(3)) / 1000
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    pct = {int(p): _ms(v) for p, v in re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", output, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkResult(requests=requests, seconds=seconds, rps=rps, p50_ms=pct.get(50, float("nan")),
                     p90_ms=pct.get(90, float("nan")), p99_ms=pct.get(99, float("nan")),
                     non_2xx=int(non2xx.group(1)) if non2xx else 0,
                     socket_errors=sum(int(x) for x in sock.groups()) if sock else 0, raw=output)


def wrk_binary() -> str:
    found = shutil.which("wrk") or ("/usr/bin/wrk" if Path("/usr/bin/wrk").exists() else None)
    if found is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    return found


def run(url: str, script: Path, *, threads: int = 2, connections: int = 32, duration: float = 10,
        script_args: list[str] | None = None) -> WrkResult:
    cmd = [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "5s",
           "-s", str(script), url]
    if script_args:
        cmd += ["--", *script_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr}\n{proc.stdout}")
    return parse(proc.stdout)
