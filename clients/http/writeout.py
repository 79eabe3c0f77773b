"""``-w/--write-out FORMAT``: curl's report after each transfer, as a pure function.

The format is text with ``%{name}`` variables, ``%header{name}`` (a header of the last
response), ``%%`` for a percent sign and ``\\n``, ``\\r``, ``\\t`` escapes; ``%{stdout}`` and
``%{stderr}`` switch where the rest goes, ``%{onerror}`` drops the rest unless the transfer
failed, ``%{json}`` and ``%{header_json}`` give everything as JSON.  Other backslash and percent
sequences are kept as they are; an unknown variable is reported and stands for nothing.
:func:`render` turns a format and the values of one transfer into the text for each stream.
"""
import json

__all__ = ["VARIABLES", "render", "format_value"]

# How each variable is shown: "code" as %03d, "int", "time" as %.6f seconds, "text" (nothing
# when there is no value).
VARIABLES = {
    "content_type": "text", "errormsg": "text", "exitcode": "int",
    "filename_effective": "text", "http_code": "code", "http_connect": "code",
    "http_version": "text", "local_ip": "text", "local_port": "int", "method": "text",
    "num_certs": "int", "num_connects": "int", "num_headers": "int", "num_redirects": "int",
    "proxy_ssl_verify_result": "int", "redirect_url": "text", "referer": "text",
    "remote_ip": "text", "remote_port": "int", "response_code": "code", "scheme": "text",
    "size_download": "int", "size_header": "int", "size_request": "int", "size_upload": "int",
    "speed_download": "int", "speed_upload": "int", "ssl_verify_result": "int",
    "time_appconnect": "time", "time_connect": "time", "time_namelookup": "time",
    "time_pretransfer": "time", "time_redirect": "time", "time_starttransfer": "time",
    "time_total": "time", "url": "text", "url_effective": "text", "urlnum": "int",
}
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def format_value(name, value):
    """One variable's text, as curl prints it."""
    kind = VARIABLES[name]
    if kind == "code":
        return "%03d" % (value or 0)
    if kind == "int":
        return "%d" % (value or 0)
    if kind == "time":
        return "%.6f" % (value or 0.0)
    return "" if value is None else str(value)


def _json_value(name, value):
    kind = VARIABLES[name]
    if kind == "time":
        return "%.6f" % (value or 0.0)
    if kind in ("code", "int"):
        return "%d" % (value or 0)
    return json.dumps(value, ensure_ascii=False)


def _json(values, version):
    fields = ['"%s":%s' % (name, _json_value(name, values.get(name))) for name in
              sorted(VARIABLES)]
    fields.append('"curl_version":%s' % json.dumps(version))
    return "{" + ",".join(fields) + "}"


def _header_json(headers):
    grouped = {}
    for name, value in headers:
        grouped.setdefault(name.lower(), []).append(value)
    items = ['"%s":%s' % (name, json.dumps(values, ensure_ascii=False))
             for name, values in grouped.items()]
    return "{" + ",\n".join(items) + "\n}"


def render(fmt, values, headers=(), version="", warn=None):
    """``(stdout_text, stderr_text)`` for ``fmt`` with ``values`` (variable name -> value;
    missing ones are empty/zero), ``headers`` (the last response's fields, in order) and the
    client ``version`` for ``%{json}``.  ``warn(message)`` hears of unknown variables."""
    out = {"stdout": [], "stderr": []}
    stream = out["stdout"]
    failed = bool(values.get("exitcode"))
    i, n = 0, len(fmt)
    while i < n:
        c = fmt[i]
        if c == "\\" and i + 1 < n:
            nxt = fmt[i + 1]
            stream.append(_ESCAPES.get(nxt, c + nxt))
            i += 2
            continue
        if c != "%" or i + 1 >= n:
            stream.append(c)
            i += 1
            continue
        if fmt[i + 1] == "%":
            stream.append("%")
            i += 2
            continue
        if fmt.startswith("{", i + 1) or fmt.startswith("header{", i + 1):
            is_header = fmt[i + 1] == "h"
            start = i + (8 if is_header else 2)
            end = fmt.find("}", start)
            if end < 0:             # not a variable after all: a plain percent sign
                stream.append(c)
                i += 1
                continue
            name = fmt[start:end]
            i = end + 1
            if is_header:
                stream.append(_header(headers, name))
            elif name in ("stdout", "stderr"):
                stream = out[name]
            elif name == "onerror":
                if not failed:
                    break
            elif name == "json":
                stream.append(_json(values, version))
            elif name == "header_json":
                stream.append(_header_json(headers))
            elif name in VARIABLES:
                stream.append(format_value(name, values.get(name)))
            elif warn is not None:
                warn("unknown --write-out variable: '%s'" % name)
            continue
        stream.append(c)
        i += 1
    return "".join(out["stdout"]), "".join(out["stderr"])


def _header(headers, name):
    """The first field called ``name`` (curl shows only the first of repeated fields)."""
    wanted = name.lower()
    for field, value in headers:
        if field.lower() == wanted:
            return value.strip()
    return ""
