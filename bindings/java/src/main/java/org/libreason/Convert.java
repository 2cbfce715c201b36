package org.libreason;

import java.util.ArrayList;
import java.util.List;
import org.libreason.internal.ByteVector;
import org.libreason.internal.ByteVectorVector;
import org.libreason.internal.CompletionVector;
import org.libreason.internal.CompletionsResult;
import org.libreason.internal.FloatVector;
import org.libreason.internal.IntVector;
import org.libreason.internal.IntVectorVector;
import org.libreason.internal.Status;
import org.libreason.internal.StringVector;

/** Conversions between the SWIG-generated types and plain Java ones. */
final class Convert {
  private Convert() {}

  /** Throws the ReasonException of a failed status. */
  static void check(Status s) {
    try {
      int code = s.getCode();
      if (code != 0) throw new ReasonException(code, s.getMessage());
    } finally {
      s.delete();  // frees a Status returned by value; a no-op on a view into a result
    }
  }

  static IntVector ints(int[] a) {
    IntVector v = new IntVector();
    v.reserve(a.length);
    for (int x : a) v.add(x);
    return v;
  }

  static int[] ints(IntVector v) {
    int n = v.size();
    int[] a = new int[n];
    for (int i = 0; i < n; i++) a[i] = v.get(i);
    return a;
  }

  static float[] floats(FloatVector v) {
    int n = v.size();
    float[] a = new float[n];
    for (int i = 0; i < n; i++) a[i] = v.get(i);
    return a;
  }

  static FloatVector floats(float[] a) {
    FloatVector v = new FloatVector();
    v.reserve(a.length);
    for (float x : a) v.add(x);
    return v;
  }

  static IntVectorVector intLists(List<int[]> list) {
    IntVectorVector vv = new IntVectorVector();
    vv.reserve(list.size());
    for (int[] a : list) {
      IntVector v = ints(a);
      try {
        vv.add(v);  // copies
      } finally {
        v.delete();
      }
    }
    return vv;
  }

  static ByteVectorVector masks(List<boolean[]> list) {
    ByteVectorVector vv = new ByteVectorVector();
    vv.reserve(list.size());
    for (boolean[] m : list) {
      ByteVector v = new ByteVector();
      try {
        v.reserve(m.length);
        for (boolean b : m) v.add((short) (b ? 1 : 0));
        vv.add(v);
      } finally {
        v.delete();
      }
    }
    return vv;
  }

  static StringVector strings(List<String> list) {
    StringVector v = new StringVector();
    v.reserve(list.size());
    for (String s : list) v.add(s);
    return v;
  }

  /** The completions of a successful result (reads views into r; r stays owned by the caller). */
  static List<Completion> completions(CompletionsResult r) {
    check(r.getStatus());
    CompletionVector v = r.getCompletions();
    int n = v.size();
    List<Completion> out = new ArrayList<>(n);
    for (int i = 0; i < n; i++) {
      org.libreason.internal.Completion c = v.get(i);
      out.add(new Completion(ints(c.getToken_ids()), floats(c.getLogprobs()), c.getText(),
          FinishReason.of(c.getFinish_reason())));
    }
    return out;
  }
}
