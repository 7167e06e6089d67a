// Reads with a byte cap (request bodies, the gateway's answers) and the service's own
// server-sent events, whatever the provider streamed.
import type { ErrorKind, HttpError } from "./errors";
import { usageOf } from "./request-log";

/** The bytes of `stream`, throwing `tooLarge()` past `maxBytes` (the rest is never read). */
export async function readBounded(
  stream: ReadableStream<Uint8Array> | null,
  maxBytes: number,
  tooLarge: () => Error,
  signal: AbortSignal,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (stream) {
    const reader = stream.getReader();
    const abort = () => reader.cancel(signal.reason).catch(() => {});
    signal.addEventListener("abort", abort);
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        size += value.byteLength;
        if (size > maxBytes) {
          await reader.cancel();
          throw tooLarge();
        }
        chunks.push(value);
      }
    } finally {
      signal.removeEventListener("abort", abort);
    }
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/** A stream that ends its source early: `stop()` cancels the source, even mid-read. */
export interface Bounded {
  stream: ReadableStream<Uint8Array>;
  stop: () => void;
}

/**
 * `source` passed on as it comes, until more than `maxBytes` have come: then the stream errors
 * with `tooLarge()` and the source is cancelled. Nothing is buffered beyond one chunk.
 */
export function bounded(source: ReadableStream<Uint8Array>, maxBytes: number, tooLarge: () => Error): Bounded {
  const reader = source.getReader();
  const stop = () => {
    reader.cancel().catch(() => {});
  };
  let size = 0;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) return controller.close();
      size += value.byteLength;
      if (size > maxBytes) {
        stop();
        return controller.error(tooLarge());
      }
      controller.enqueue(value);
    },
    cancel: stop,
  });
  return { stream, stop };
}

/** The `data:` payloads of a server-sent event stream, parsed as JSON (`[DONE]` ends it). */
export async function* eventData(stream: ReadableStream<Uint8Array>): AsyncGenerator<unknown> {
  const decoder = new TextDecoder();
  const reader = stream.getReader();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      const lines = buffer.split(/\r?\n/);
      buffer = done ? "" : (lines.pop() ?? "");
      for (const line of lines) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        if (data) yield JSON.parse(data);
      }
      if (done) return;
    }
  } finally {
    reader.releaseLock();
  }
}

/** One piece of a streamed answer: its text, and the model or usage when this chunk names them. */
export interface Piece {
  text: string;
  model?: string | undefined;
  usage?: unknown;
}

/** What a streamed answer reports in its `done` event (and the request log). */
export interface StreamEnd {
  model: string;
  usage: unknown;
  logId: string | null;
  cacheStatus: string | null;
}

/** Where a stream's pieces come from: its deadline, its errors, and how to stop reading it. */
export interface StreamSource {
  readonly deadline: AbortSignal;
  streamError(err: unknown): HttpError;
  close(): void;
}

const encoder = new TextEncoder();

function event(name: string, data: unknown): Uint8Array {
  return encoder.encode(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
}

function rejectOnAbort(signal: AbortSignal): Promise<never> {
  const expired = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
  expired.catch(() => {}); // observed through the races that use it
  return expired;
}

/** The next `delta` event, or null at the end; the pieces' model and usage are kept in `end`. */
async function nextDelta(
  iterator: AsyncIterator<Piece>,
  expired: Promise<never>,
  end: StreamEnd,
): Promise<Uint8Array | null> {
  for (;;) {
    const step = await Promise.race([iterator.next(), expired]);
    if (step.done) return null;
    const { text, model, usage } = step.value;
    end.model = model || end.model;
    end.usage = usage ?? end.usage;
    if (text) return event("delta", { text });
  }
}

function doneEvent(end: StreamEnd): Uint8Array {
  const done = { model: end.model, log_id: end.logId, cache_status: end.cacheStatus };
  return event("done", end.usage ? { ...done, usage: usageOf(end.usage) } : done);
}

/** 502 carries the gateway's log id (or null), as the JSON answer does; 504 has none. */
function errorEvent(failure: HttpError): Uint8Array {
  const logId = "log_id" in failure.fields ? { log_id: failure.fields.log_id } : {};
  return event("error", { error: failure.message, status: failure.status, ...logId });
}

/**
 * The service's own server-sent events: `delta` with `{"text"}` per piece, then `done` with
 * `{"model", "log_id", "cache_status"}` (and `"usage"` when the provider sent it), or `error`
 * with `{"error", "status"}` (502 adds `"log_id"`) when the gateway fails or the deadline passes.
 * The upstream is closed when the stream ends, however it ends (the caller hanging up included);
 * `onEnd` is then called once, with the error class or null. No upstream byte is passed through.
 */
export function eventStream(
  pieces: AsyncIterable<Piece>,
  end: StreamEnd,
  source: StreamSource,
  onEnd: (end: StreamEnd, error: ErrorKind | null) => void,
  headers: Record<string, string>,
): Response {
  const iterator = pieces[Symbol.asyncIterator]();
  const expired = rejectOnAbort(source.deadline);
  let ended = false;
  const finish = (error: ErrorKind | null) => {
    if (ended) return;
    ended = true;
    source.close();
    iterator.return?.().catch(() => {}); // not awaited: it waits for a pending read
    onEnd(end, error);
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let chunk: Uint8Array | null;
      let error: ErrorKind | null = null;
      try {
        chunk = await nextDelta(iterator, expired, end);
        if (chunk === null) {
          chunk = doneEvent(end);
        } else if (!ended) {
          return controller.enqueue(chunk);
        }
      } catch (err) {
        const failure = source.streamError(err);
        error = failure.kind;
        chunk = errorEvent(failure);
      }
      if (ended) return; // the caller hung up meanwhile
      controller.enqueue(chunk);
      controller.close();
      finish(error);
    },
    cancel() {
      finish("client_gone");
    },
  });
  return new Response(body, {
    status: 200,
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", ...headers },
  });
}
