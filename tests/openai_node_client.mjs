// The official Node OpenAI SDK (npm `openai`) against a service's /v1: a chat, a stream, a
// tool-call round trip, response_format with a JSON schema, embeddings, the models list and a
// wrong key. BASE_URL is the service's /v1, API_KEY a caller key, TOOL one tool (JSON). It
// prints one JSON line of what it got. tests/test_openai_sdks.py (the Python service) and
// tests/test_worker_openai_sdks.py (the Worker) run it next to a node_modules with `openai`.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.API_KEY, maxRetries: 0 });
const user = (content) => [{ role: "user", content }];
const weather = JSON.parse(process.env.TOOL);
const out = {};
out.chat = (
  await client.chat.completions.create({ model: "gpt-4o-mini", messages: user("Hi"), temperature: 0.5 })
).choices[0].message.content;
out.stream = "";
for await (const chunk of await client.chat.completions.create({
  model: "gpt-4o-mini",
  messages: user("Hi"),
  stream: true,
})) {
  out.stream += chunk.choices[0]?.delta?.content ?? "";
}
const asked = await client.chat.completions.create({ model: "gpt-4o-mini", messages: user("Paris?"), tools: [weather] });
const call = asked.choices[0].message.tool_calls[0];
out.tool = (
  await client.chat.completions.create({
    model: "gpt-4o-mini",
    tools: [weather],
    messages: [...user("Paris?"), asked.choices[0].message, { role: "tool", tool_call_id: call.id, content: "rain" }],
  })
).choices[0].message.content;
const schema = { type: "object", properties: { answer: { type: "string" } } };
out.json = JSON.parse(
  (
    await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages: user("Hi"),
      response_format: { type: "json_schema", json_schema: { name: "a", schema } },
    })
  ).choices[0].message.content,
);
out.embedding = (
  await client.embeddings.create({ model: "text-embedding-3-small", input: "four", encoding_format: "float" })
).data[0].embedding;
out.models = (await client.models.list()).data.map((m) => m.id);
try {
  await new OpenAI({ baseURL: process.env.BASE_URL, apiKey: "wrong", maxRetries: 0 }).models.list();
} catch (error) {
  out.unauthorized = [error.status, error.error?.type];
}
console.log(JSON.stringify(out));
