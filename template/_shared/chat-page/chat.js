// The chat page: each message goes to POST /chat with "stream": true, and the service's
// server-sent events show as they arrive (delta, then done or error). The caller key the
// user types is kept in sessionStorage only (this tab, gone when it closes): never in
// localStorage, a cookie or the URL. Requests go to this page's own origin only.

const KEY_ITEM = "caller-key";
const history = []; // the conversation so far, sent with each message

function element(tag, className, text = "") {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = text; // text only: nothing the service sends is parsed as HTML
  return node;
}

function addTurn(role, text) {
  const turn = element("li", role);
  turn.append(element("p", "text", text));
  document.getElementById("transcript").append(turn);
  return turn;
}

function showDetails(turn, { model, log_id, cache_status }) {
  const details = element("p", "details");
  details.append(
    element("span", "model", `model ${model || "unknown"}`),
    element("span", "log-id", `log id ${log_id || "none"}`),
    element("span", "cache-status", `cache ${cache_status || "unknown"}`),
  );
  turn.append(details);
}

/** Shows `message` on the turn; returns null (the message failed). */
function fail(turn, message, logId) {
  turn.append(element("p", "error", logId ? `${message} (log id ${logId})` : message));
  return null;
}

/** A refused request's message: its status and the service's own `error` text. */
function refusal(status, body) {
  const said = body && typeof body.error === "string" ? body.error : "";
  if (status === 401) return `401: wrong or missing key${said ? ` (${said})` : ""}`;
  return `${status}: ${said || "the service sent no error message"}`;
}

/** Each event of a server-sent event stream, as {event, data} with data parsed as JSON. */
async function* serverEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        const [field, ...rest] = line.split(":");
        const text = rest.join(":").replace(/^ /, "");
        if (field === "event") event = text;
        if (field === "data") data.push(text);
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

/** Streams one answer into `turn`; returns the reply's text, or null when it failed. */
async function streamReply(turn, messages, headers) {
  let response;
  try {
    const body = JSON.stringify({ messages, stream: true });
    response = await fetch("chat", { method: "POST", headers, body, cache: "no-store" });
  } catch (error) {
    return fail(turn, `the service could not be reached (${error.message})`);
  }
  if (!response.ok) {
    return fail(turn, refusal(response.status, await response.json().catch(() => null)));
  }
  const text = turn.querySelector(".text");
  const fromHeaders = {
    log_id: response.headers.get("cf-aig-log-id"),
    cache_status: response.headers.get("cf-aig-cache-status"),
  };
  try {
    for await (const { event, data } of serverEvents(response.body)) {
      if (event === "delta") text.textContent += data.text;
      if (event === "error") return fail(turn, `${data.status}: ${data.error}`, data.log_id);
      if (event === "done") {
        showDetails(turn, { ...fromHeaders, ...data });
        return text.textContent;
      }
    }
  } catch (error) {
    return fail(turn, `the stream broke off (${error.message})`);
  }
  return fail(turn, "the stream ended before the reply was complete");
}

async function send(event) {
  event.preventDefault();
  const form = event.target;
  const prompt = form.prompt.value.trim();
  if (!prompt) return;
  const headers = { "content-type": "application/json" };
  if (form.key) {
    sessionStorage.setItem(KEY_ITEM, form.key.value);
    headers.authorization = `Bearer ${form.key.value}`;
  }
  const message = { role: "user", content: prompt };
  addTurn("user", prompt);
  form.send.disabled = true;
  try {
    const reply = await streamReply(addTurn("assistant"), [...history, message], headers);
    if (reply !== null) {
      history.push(message, { role: "assistant", content: reply });
      form.prompt.value = "";
    }
  } finally {
    form.send.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("chat");
  if (form.key) form.key.value = sessionStorage.getItem(KEY_ITEM) ?? "";
  form.addEventListener("submit", send);
  // Enter sends, Shift+Enter starts a new line (as in most chat apps).
  form.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !form.send.disabled) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
});
