// Tools written in C#: a Func<argumentsJson, result> that a pipeline's GRPO completions call
// mid-rollout (multi-turn rollouts), adapted to the ToolFunction director.
using System;
using System.Threading;

namespace LibReason {

// The tool director: a C# function behind the C++ ToolFunction. Called on tool threads of the
// library, several at once. Exceptions never cross into native code: a throwing tool fails the
// call, and the model reads "error: tool 'NAME' failed: MESSAGE". `reply` is a view of the C++
// caller's object, valid for the call only (SWIG does not let this proxy own it).
internal sealed class ToolAdapter : Native.ToolFunction {
  readonly Func<string, string> fn;
  Exception firstError;
  long calls;

  internal ToolAdapter(Func<string, string> fn) { this.fn = fn; }

  internal Exception FirstError { get { return Volatile.Read(ref firstError); } }
  internal long Calls { get { return Interlocked.Read(ref calls); } }

  public override void call(string argumentsJson, Native.ToolReply reply) {
    Interlocked.Increment(ref calls);
    try {
      reply.text = fn(argumentsJson ?? "") ?? "";
    } catch (Exception e) {
      Interlocked.CompareExchange(ref firstError, e, null);
      reply.text = e.Message ?? e.GetType().Name;
      reply.failed = true;
    }
  }
}

}
