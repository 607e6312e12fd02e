# Fault injection for the fake Square server: what /__fake__/faults arms, and which /v2/ request
# gets which fault.  The server (server.py) carries the faults out on the wire.
import threading

FAULTS = ("429", "500", "502", "503", "delay", "hang", "reset", "truncate", "malformed", "wrong_shape", "401",
          "410", "invalid_cursor", "repeat_cursor", "redirect", "oversize")
HANG_DEFAULT_MS = 30000
HANG_MAX_MS = 120000
DELAY_DEFAULT_MS = 2000
OVERSIZE_DEFAULT = 200 * 1024 * 1024
OVERSIZE_MAX = 2 * 1024 * 1024 * 1024


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.armed = []
        self.latency_ms = 0
        self.fired = {}

    def clear(self):
        with self.lock:
            self.armed = []
            self.latency_ms = 0

    def reset_stats(self):
        with self.lock:
            self.fired = {}

    def arm(self, spec):
        """-> (answer dict, error string)."""
        if not isinstance(spec, dict):
            return None, "body must be a JSON object"
        with self.lock:
            answer = {}
            if "latency_ms" in spec:
                lat = spec["latency_ms"]
                if not isinstance(lat, (int, float)) or lat < 0:
                    return None, "latency_ms must be a non-negative number"
                self.latency_ms = int(lat)
                answer["latency_ms"] = self.latency_ms
            if "fault" not in spec:
                if not answer:
                    return None, "give `fault` (one of %s) or `latency_ms`" % ", ".join(FAULTS)
                return answer, None
            f = str(spec["fault"])
            if f not in FAULTS:
                return None, "unknown fault %r (known: %s)" % (f, ", ".join(FAULTS))
            count = spec.get("count", 1)
            if not isinstance(count, int) or count < 1:
                return None, "count must be a positive integer"
            path = spec.get("path") or "/v2/"
            if not isinstance(path, str) or not path.startswith("/"):
                return None, "path must be a path prefix starting with /"
            fault = {"fault": f, "path": path, "count": count}
            if spec.get("retry_after") is not None:
                fault["retry_after"] = spec["retry_after"]
            if f in ("hang", "delay"):
                d = spec.get("delay_ms", HANG_DEFAULT_MS if f == "hang" else DELAY_DEFAULT_MS)
                if not isinstance(d, (int, float)) or d < 0:
                    return None, "delay_ms must be a non-negative number"
                fault["delay_ms"] = int(min(d, HANG_MAX_MS))
            if f == "oversize":
                b = spec.get("bytes", OVERSIZE_DEFAULT)
                if not isinstance(b, int) or b < 1024:
                    return None, "bytes must be an integer >= 1024"
                fault["bytes"] = min(b, OVERSIZE_MAX)
            self.armed.append(fault)
            answer["armed"] = dict(fault)
            return answer, None

    def take(self, path, has_cursor):
        """The fault for this /v2/ request, if any (consumes one of its count)."""
        with self.lock:
            for fault in self.armed:
                if not path.startswith(fault["path"]):
                    continue
                if fault["fault"] == "invalid_cursor" and not has_cursor:
                    continue
                fault["count"] -= 1
                if fault["count"] <= 0:
                    self.armed.remove(fault)
                self.fired[fault["fault"]] = self.fired.get(fault["fault"], 0) + 1
                return dict(fault)
            return None

    def state(self):
        with self.lock:
            return {"armed": [dict(f) for f in self.armed], "latency_ms": self.latency_ms}
