"""The r-button: a small script a vendor's pages embed so a visitor can connect their VRM agent.

The script has no dependencies. It finds every element with ``data-vrm-rbutton`` and puts a link in it,
"Connect with my VRM agent", pointing at ``web+vrm:connect?discovery=<the vendor's discovery URL>``, or at
``<agent>/connect?discovery=...`` when the element has ``data-agent`` or the browser remembers an agent
in ``localStorage["openvrm.agent"]``. Only http(s) agent URLs are used; anything else is ignored.
"""

from __future__ import annotations

import html
import json

RBUTTON_JS = """\
(function () {
  "use strict";
  var DISCOVERY = %(discovery)s;
  function agentUrl(value) {
    if (typeof value !== "string" || !value) { return null; }
    try {
      var u = new URL(value);
      if (u.protocol !== "https:" && u.protocol !== "http:") { return null; }
      return u.href.replace(/\\/+$/, "");
    } catch (e) { return null; }
  }
  function remembered() {
    try { return window.localStorage.getItem("openvrm.agent"); } catch (e) { return null; }
  }
  function render(el) {
    if (el.getAttribute("data-vrm-rendered") === "1") { return; }
    var discovery = el.getAttribute("data-discovery") || DISCOVERY;
    var query = "discovery=" + encodeURIComponent(discovery);
    var agent = agentUrl(el.getAttribute("data-agent")) || agentUrl(remembered());
    var a = document.createElement("a");
    a.href = agent ? agent + "/connect?" + query : "web+vrm:connect?" + query;
    a.className = "vrm-rbutton";
    a.setAttribute("role", "button");
    a.setAttribute("aria-label", "Connect with my VRM agent (opens your personal agent)");
    a.textContent = el.getAttribute("data-label") || "Connect with my VRM agent";
    a.style.cssText = "display:inline-block;padding:.6em 1.1em;border-radius:.4em;" +
      "background:#1d4ed8;color:#fff;font:600 1rem system-ui,sans-serif;text-decoration:none";
    el.textContent = "";
    el.appendChild(a);
    el.setAttribute("data-vrm-rendered", "1");
  }
  function run() {
    var found = document.querySelectorAll("[data-vrm-rbutton]");
    for (var i = 0; i < found.length; i++) { render(found[i]); }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", run);
  } else { run(); }
})();
"""


def rbutton_js(discovery_url: str) -> str:
    """The script, with the vendor's discovery URL built in (as a JSON string literal)."""
    literal = json.dumps(discovery_url).replace("<", "\\u003c").replace(">", "\\u003e")
    return RBUTTON_JS % {"discovery": literal}


def snippet(base_url: str) -> str:
    """The HTML a vendor pastes into its pages."""
    base = html.escape(base_url.rstrip("/"), quote=True)
    return f'<div data-vrm-rbutton></div>\n<script src="{base}/vrm/rbutton.js" async></script>'


def home_page(name: str, base_url: str) -> str:
    """A plain page for the vendor: the r-button itself and the snippet to copy."""
    code = snippet(base_url)
    title = html.escape(name)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font:1rem/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}}
pre{{background:#f3f4f6;padding:1rem;overflow-x:auto}}</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p>Connect your personal VRM agent to {title}: you offer your terms, we answer, and both sides keep the
same signed record of what was agreed and shared.</p>
{code}
<h2>Add this button to your own pages</h2>
<pre><code>{html.escape(code)}</code></pre>
<p>Discovery document: <a href="{html.escape(base_url)}/.well-known/vrm">/.well-known/vrm</a></p>
</main>
</body>
</html>
"""
