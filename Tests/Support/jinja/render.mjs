// Renders chat templates with @huggingface/jinja, the reference the C# interpreter is checked against.
// stdin: a JSON array of {template, context}; stdout: a JSON array with, for each, {output} or {error}.
import { Template } from "@huggingface/jinja";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const cases = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const results = cases.map(({ template, context }) => {
	try {
		return { output: new Template(template).render(context ?? {}) };
	} catch (e) {
		return { error: String(e?.message ?? e) };
	}
});
process.stdout.write(JSON.stringify(results));
