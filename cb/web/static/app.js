// cb web: the little script of the pages. Everything it inserts as HTML comes from cb's own server, which
// has escaped every piece of untrusted text in it (cb/web/markup.py); text it builds itself goes in as text.
"use strict";

const csrf = document.querySelector('meta[name="cb-csrf"]').content;
const statusLine = document.getElementById("status");

function say(text, error) {
  statusLine.textContent = text || "";
  statusLine.className = error ? "error" : "";
}

function element(tag, cls, children) {
  const el = document.createElement(tag);
  el.className = cls;
  for (const child of [].concat(children || [])) el.append(child);
  return el;
}

function request(url, body, signal) {
  return fetch(url, {
    method: "POST", credentials: "same-origin", signal,
    headers: {"Content-Type": "application/json", "X-CB-CSRF": csrf},
    body: JSON.stringify(body),
  });
}

async function post(url, body) {
  let response;
  try {
    response = await request(url, body);
  } catch (e) {
    return {error: `cb web is not answering (${e.message})`};
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok && !data.error) data.error = `HTTP ${response.status}`;
  return data;
}

function swap(id, html) {
  const old = document.getElementById(id);
  if (!old) return;
  const fresh = document.createElement("template");
  fresh.innerHTML = html;
  old.replaceWith(fresh.content);
}

function handle(data, target) {
  if (data.error) return say(data.error, true);
  if (data.html && target) swap(target, data.html);
  if (data.reload) {
    if (data.message) sessionStorage.setItem("cb-say", data.message);
    return location.reload();
  }
  say(data.message || "");
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  if (button.dataset.reveal) {
    document.getElementById(button.dataset.reveal).hidden = false;
  } else if (button.dataset.conceal) {
    document.getElementById(button.dataset.conceal).hidden = true;
  } else if (button.dataset.post && button.type === "button") {
    handle(await post(button.dataset.post, JSON.parse(button.dataset.body || "{}")), button.dataset.target);
  }
});

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (form.id === "ask") {
    event.preventDefault();
    return ask(form);
  }
  if (!form.dataset.post) return;
  event.preventDefault();
  const body = Object.assign(JSON.parse(form.dataset.body || "{}"), Object.fromEntries(new FormData(form)));
  const data = await post(form.dataset.post, body);
  handle(data, form.dataset.target);
  if (!data.error && !form.dataset.body) form.reset();
});

document.addEventListener("change", async (event) => {
  const select = event.target;
  if (select.id === "session") handle(await post(select.dataset.post, {session: select.value}));
});

// --- the chat: the answer streams in as HTML the server renders, re-rendered as it grows ---------------

let running = null;

function busy(on) {
  document.getElementById("send").hidden = on;
  document.getElementById("stop").hidden = !on;
}

async function ask(form) {
  const box = form.elements.message;
  const question = box.value.trim();
  if (!question || running) return;
  const conversation = document.getElementById("conversation");
  conversation.querySelector(".hint")?.remove();
  conversation.append(element("article", "msg user", [element("div", "who", "you"), element("pre", "text", question)]));
  const md = element("div", "md");
  const answer = element("article", "msg assistant streaming", [element("div", "who", "cb"), md]);
  conversation.append(answer);
  answer.scrollIntoView({block: "end"});
  box.value = "";
  running = new AbortController();
  busy(true);
  try {
    const response = await request("/api/chat", {message: question}, running.signal);
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      say(data.error || `HTTP ${response.status}`, true);
      answer.remove();
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (frame.startsWith("data: ")) onEvent(JSON.parse(frame.slice(6)), answer, md);
      }
    }
  } catch (e) {
    say(e.name === "AbortError" ? "answer stopped (nothing recorded)" : String(e), e.name !== "AbortError");
  } finally {
    running = null;
    busy(false);
    answer.classList.remove("streaming");
  }
}

function onEvent(event, answer, md) {
  if (event.t === "status") {
    say(event.text);
  } else if (event.t === "answer") {
    md.innerHTML = event.html;
    answer.scrollIntoView({block: "end"});
  } else if (event.t === "done") {
    say(event.cuts.map((cut) => `[… ${cut}]`).join(" "));
    document.getElementById("speed").textContent = event.speed;
    swap("meter", event.meter);
    if (event.batch) answer.insertAdjacentHTML("afterend", event.batch);
  } else if (event.t === "cancelled") {
    say("answer cancelled (nothing recorded)");
  } else if (event.t === "error") {
    say(event.message, true);
    if (!md.textContent) answer.remove();
  }
}

const stop = document.getElementById("stop");
if (stop) stop.addEventListener("click", () => running && running.abort());

const box = document.querySelector("#ask textarea");
if (box) {
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      box.form.requestSubmit();
    }
  });
}

// --- tabs: the server pushes the tabs' tails whenever one writes -----------------------------------------

const tabs = document.querySelector("[data-stream]");
if (tabs) {
  const source = new EventSource(tabs.dataset.stream);
  source.onmessage = (message) => {
    tabs.innerHTML = JSON.parse(message.data).html;
    for (const out of tabs.querySelectorAll("pre.out")) out.scrollTop = out.scrollHeight;
  };
}

const carried = sessionStorage.getItem("cb-say");
if (carried) {
  sessionStorage.removeItem("cb-say");
  say(carried);
}
