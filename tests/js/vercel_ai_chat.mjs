// A Node.js chatbot on the Vercel AI SDK, set up the way its users do: the OpenTelemetry Node SDK
// with the OTLP/protobuf exporter, and `experimental_telemetry` on each generateText/streamText call
// (sessionId, userId and source in its metadata). It talks to an OpenAI-compatible server.
//
//   OTLP_TRACES_URL=http://127.0.0.1:4318/v1/traces LLM_BASE_URL=http://127.0.0.1:8000/v1 \
//   RUN_ID=abc SCENARIOS=generate,stream node tests/js/vercel_ai_chat.mjs
//
// SCENARIOS picks conversations by name (all when unset).
// Prints one JSON line per conversation turn: {scenario, sessionId, text, usage, error}.
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { generateText, stepCountIs, streamText, tool } from 'ai';
import { z } from 'zod';

const runId = process.env.RUN_ID ?? 'run';
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'vercel-ai-bot' }),
  spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: process.env.OTLP_TRACES_URL }))],
});
provider.register();

const llm = createOpenAICompatible({
  name: 'localai',
  baseURL: process.env.LLM_BASE_URL,
  apiKey: 'not-needed',
  includeUsage: true, // ask for the usage chunk when streaming
});
const model = llm.chatModel('gpt-4o-mini');

const weather = tool({
  description: 'Current weather in a city',
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => `sunny, 21 C in ${city}`,
});

function telemetry(scenario) {
  return {
    isEnabled: true,
    functionId: 'support-chat',
    metadata: { sessionId: `${runId}-${scenario}`, userId: `user-${scenario}`, source: 'website' },
  };
}

const scenarios = {
  generate: () =>
    generateText({
      model,
      system: 'You are the shop assistant.',
      messages: [
        { role: 'user', content: 'Hello' },
        { role: 'assistant', content: 'Hi! How can I help?' },
        { role: 'user', content: 'When do you open on Sunday?' },
      ],
      experimental_telemetry: telemetry('generate'),
    }),
  'generate-tool': () =>
    generateText({
      model,
      prompt: 'What is the weather in Paris?',
      tools: { weather },
      stopWhen: stepCountIs(3),
      experimental_telemetry: telemetry('generate-tool'),
    }),
  stream: async () => {
    const result = streamText({
      model,
      prompt: 'Do you ship to Canada?',
      experimental_telemetry: telemetry('stream'),
    });
    await result.consumeStream();
    return { text: await result.text, totalUsage: await result.totalUsage };
  },
  'stream-tool': async () => {
    const result = streamText({
      model,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Is it raining in Oslo?' }] }],
      tools: { weather },
      stopWhen: stepCountIs(3),
      experimental_telemetry: telemetry('stream-tool'),
    });
    await result.consumeStream();
    return { text: await result.text, totalUsage: await result.totalUsage };
  },
  error: () =>
    generateText({
      model,
      prompt: 'Please FAIL now',
      maxRetries: 0,
      experimental_telemetry: telemetry('error'),
    }),
};

const wanted = process.env.SCENARIOS ? process.env.SCENARIOS.split(',') : Object.keys(scenarios);
for (const scenario of wanted) {
  const run = scenarios[scenario];
  if (run === undefined) throw new Error(`unknown scenario ${scenario}`);
  const line = { scenario, sessionId: `${runId}-${scenario}` };
  try {
    const result = await run();
    line.text = result.text;
    line.usage = result.totalUsage;
  } catch (error) {
    line.error = String(error?.message ?? error);
  }
  console.log(JSON.stringify(line));
}
await provider.shutdown(); // flushes the batch processor: the processor has answered when this returns
