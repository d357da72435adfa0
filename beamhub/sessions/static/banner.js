// beamhub's banner inside a session's JupyterLab (the proxy adds this script to its pages). Always a small
// "beamhub" link back to the session's page in the console; once the session's end is within the earliest
// warning, a bar that says when it ends, with one click to extend it by an hour.
(() => {
  "use strict";
  const POLL_MS = 30000;
  const TEXT = {
    en: {
      ends: (time, left) => `This session ends at ${time} (in ${left}).`,
      left: (h, m) => (h ? `${h} h ${m} min` : `${m} min`),
      extend: "Extend 1 hour",
      back: "Back to the console",
      failed: "Could not extend: ",
      home: "Open this session in the beamhub console",
    },
    zh: {
      ends: (time, left) => `本会话将于 ${time} 结束（还剩 ${left}）。`,
      left: (h, m) => (h ? `${h} 小时 ${m} 分钟` : `${m} 分钟`),
      extend: "延长 1 小时",
      back: "返回控制台",
      failed: "无法延长：",
      home: "在 beamhub 控制台中查看本会话",
    },
  };
  const language = (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
  const text = TEXT[language];
  let session = null;
  let skew = 0; // the server's clock minus this browser's

  const element = (tag, attributes, style, children = []) => {
    const node = document.createElement(tag);
    Object.assign(node, attributes);
    Object.assign(node.style, style);
    node.append(...children);
    return node;
  };
  const button = { font: "inherit", margin: "0 0 0 10px", padding: "2px 10px", cursor: "pointer",
                   border: "1px solid #8a6d00", borderRadius: "3px", background: "#fff", color: "#222" };
  const message = element("span", {}, {});
  const extend = element("button", { type: "button", textContent: text.extend }, button);
  const back = element("a", { textContent: text.back }, { ...button, textDecoration: "none", display: "inline-block" });
  const bar = element("div", { id: "beamhub-banner", role: "alert", hidden: true }, {
    position: "fixed", top: "0", right: "90px", zIndex: "10000", // clear of the menu bar on the left
    padding: "5px 14px", background: "#fff3cd", color: "#222", border: "1px solid #e0c060",
    borderTop: "none", borderRadius: "0 0 6px 6px", font: "13px system-ui, sans-serif",
    boxShadow: "0 2px 6px rgba(0,0,0,.2)",
  }, [message, extend, back]);
  const home = element("a", { id: "beamhub-home", textContent: "beamhub", title: text.home }, {
    position: "fixed", top: "6px", right: "10px", zIndex: "10000", font: "12px system-ui, sans-serif",
    color: "#666", textDecoration: "none",
  });

  const left = (seconds) => {
    const minutes = Math.max(Math.ceil(seconds / 60), 1);
    return text.left(Math.floor(minutes / 60), minutes % 60);
  };

  const show = () => {
    if (!session) return;
    const end = new Date(session.expires_at);
    const remaining = (end.getTime() - (Date.now() + skew)) / 1000;
    bar.hidden = !(remaining <= Math.max(...session.warnings, 0));
    const time = end.toLocaleTimeString(language === "zh" ? "zh-CN" : "en-GB", { hour: "2-digit", minute: "2-digit" });
    message.textContent = text.ends(time, left(remaining));
  };

  const take = (answer) => {
    session = answer;
    skew = new Date(answer.now).getTime() - Date.now();
    back.href = home.href = answer.console_url;
    home.hidden = false;
    show();
  };

  const ask = async (path, method = "GET") => {
    const response = await fetch(path, { method, credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : response.statusText);
    return body;
  };

  const poll = async () => {
    try {
      take(await ask("/_beamhub/session"));
    } catch {
      bar.hidden = true; // it ended, or is not ours to show: JupyterLab says what it can
    }
  };

  extend.addEventListener("click", async () => {
    extend.disabled = true;
    try {
      take(await ask("/_beamhub/extend", "POST"));
    } catch (error) {
      message.textContent = text.failed + error.message;
    } finally {
      extend.disabled = false;
    }
  });

  home.hidden = true;
  document.body.append(bar, home);
  poll();
  setInterval(poll, POLL_MS);
  setInterval(show, 10000);
})();
