/* Java glue of libreason: the one interface (../reason.i) plus Java-only typemaps. The classes
 * SWIG generates go to package org.libreason.internal; the public API is the hand-written layer
 * in src/main/java/org/libreason (Model, Tokenizer, Trainer, TokenStream, Pipeline, ...).
 *
 * Text crosses JNI as UTF-8 byte arrays, not through GetStringUTFChars/NewStringUTF: those use
 * the JVM's "modified UTF-8" (NUL as C0 80, characters outside the BMP as two 3-byte
 * surrogates), which is not what the tokenizer expects nor what the library hands out. */
%include <std_string.i>

%typemap(jni) std::string, const std::string & "jbyteArray"
%typemap(jtype) std::string, const std::string & "byte[]"
%typemap(jstype) std::string, const std::string & "String"
%typemap(javain) std::string, const std::string & "reason_native.utf8($javainput)"
%typemap(javaout) std::string, const std::string & {
    return reason_native.text($jnicall);
  }
%typemap(javadirectorin) std::string, const std::string & "reason_native.text($jniinput)"
%typemap(javadirectorout) std::string, const std::string & "reason_native.utf8($javacall)"

%typemap(in) std::string
%{ if (!$input) {
     SWIG_JavaThrowException(jenv, SWIG_JavaNullPointerException, "null string");
     return $null;
   }
   {
     const jsize $1_n = jenv->GetArrayLength($input);
     $1.resize(size_t($1_n));
     if ($1_n) jenv->GetByteArrayRegion($input, 0, $1_n, reinterpret_cast<jbyte*>(&$1[0]));
   } %}
%typemap(in) const std::string & ($*1_ltype temp)
%{ if (!$input) {
     SWIG_JavaThrowException(jenv, SWIG_JavaNullPointerException, "null string");
     return $null;
   }
   {
     const jsize $1_n = jenv->GetArrayLength($input);
     temp.resize(size_t($1_n));
     if ($1_n) jenv->GetByteArrayRegion($input, 0, $1_n, reinterpret_cast<jbyte*>(&temp[0]));
   }
   $1 = &temp; %}
%typemap(directorout) std::string
%{ if (!$input) {
     if (!jenv->ExceptionCheck()) SWIG_JavaThrowException(jenv, SWIG_JavaNullPointerException, "null string");
     return $null;
   }
   {
     const jsize $1_n = jenv->GetArrayLength($input);
     $result.resize(size_t($1_n));
     if ($1_n) jenv->GetByteArrayRegion($input, 0, $1_n, reinterpret_cast<jbyte*>(&$result[0]));
   } %}
%typemap(out) std::string
%{ $result = jenv->NewByteArray(jsize($1.size()));
   if ($result && !$1.empty()) jenv->SetByteArrayRegion($result, 0, jsize($1.size()), reinterpret_cast<const jbyte*>($1.data())); %}
%typemap(out) const std::string &
%{ $result = jenv->NewByteArray(jsize($1->size()));
   if ($result && !$1->empty()) jenv->SetByteArrayRegion($result, 0, jsize($1->size()), reinterpret_cast<const jbyte*>($1->data())); %}
%typemap(directorin, descriptor="Ljava/lang/String;") std::string, const std::string &
%{ $input = jenv->NewByteArray(jsize($1.size()));
   if ($input && !$1.empty()) jenv->SetByteArrayRegion($input, 0, jsize($1.size()), reinterpret_cast<const jbyte*>($1.data()));
   Swig::LocalRefGuard $1_refguard(jenv, $input); %}

%pragma(java) modulecode=%{
  /** UTF-8 bytes of a Java string (null is refused as the C++ layer has no null string). */
  public static byte[] utf8(String s) {
    if (s == null) throw new NullPointerException("null string");
    return s.getBytes(java.nio.charset.StandardCharsets.UTF_8);
  }
  /** The Java string of UTF-8 bytes (malformed input becomes U+FFFD, never an exception). */
  public static String text(byte[] b) {
    return b == null ? null : new String(b, java.nio.charset.StandardCharsets.UTF_8);
  }
%}

/* A Java exception thrown by a director (TokenHandler.on_token, RewardFunction.score) becomes a
 * C++ Swig::DirectorException, which reason_binding's trampolines catch: the request stops, or
 * the reward counts as failed. The idiomatic layer also catches everything itself, so in
 * practice no Java exception reaches this point. */

%include "../reason.i"
