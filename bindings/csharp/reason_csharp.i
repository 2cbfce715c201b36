/* C# (P/Invoke) flavour of the one SWIG interface: it only adds C#-specific renames and class
 * modifiers, then %includes ../reason.i. The generated classes (namespace LibReason.Native,
 * DllImport "reason_csharp") are internal to LibReason.dll: the public surface is the
 * idiomatic layer in src/ (namespace LibReason), which owns every native object through a
 * SafeHandle and keeps director objects reachable while native code may call them. */

/* `event` is a C# keyword. */
%rename(Event) reason_binding::StreamEventResult::event;

/* Everything SWIG generates is an implementation detail of LibReason.dll. */
%typemap(csclassmodifiers) SWIGTYPE "internal class"
%pragma(csharp) moduleclassmodifiers="internal class"
%pragma(csharp) imclassclassmodifiers="internal class"

%include "../reason.i"
