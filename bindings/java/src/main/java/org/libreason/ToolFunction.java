package org.libreason;

/**
 * A tool that the completions of a pipeline's GRPO stage call (multi-turn rollouts), written in
 * Java and registered by name with {@link Pipeline#tool}; the stage's config lists it as
 * {@code tools { callbacks: "NAME" }}. The model writes a call (by default
 * {@code <tool_call>{"name": "NAME", "arguments": {...}}</tool_call>}), the returned text is
 * appended for the model to read (tokens that carry no loss), and sampling goes on.
 *
 * <p>An exception thrown here fails the call: the model reads
 * {@code error: tool 'NAME' failed: MESSAGE}; the run goes on. Calls run on threads of the
 * library, several at once: the tool must be thread-safe. A call that passes the stage's
 * {@code tools.deadline_ms} is abandoned (the model reads a time-out error) and may still be
 * running after {@link Pipeline#run} returns.
 */
@FunctionalInterface
public interface ToolFunction {
  /**
   * @param argumentsJson the call's "arguments" as JSON text ("" when absent); for a
   *     {@code raw: true} tool, the text of the call as the model wrote it
   * @return the text the model reads next
   */
  String call(String argumentsJson) throws Exception;
}
