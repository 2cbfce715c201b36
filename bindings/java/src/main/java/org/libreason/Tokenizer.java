package org.libreason;

import java.lang.ref.Reference;
import java.nio.file.Path;
import java.util.Objects;
import org.libreason.internal.IdsResult;
import org.libreason.internal.IntVector;
import org.libreason.internal.TextResult;

/**
 * A Hugging Face tokenizer (tokenizer.json): either loaded on its own ({@link #load}) or a
 * model's ({@link Model#tokenizer()}, owned by the model). Thread-safe.
 */
public final class Tokenizer implements AutoCloseable {
  private final org.libreason.internal.Tokenizer handle;
  private final Lifecycle life;  // this tokenizer's own, or its model's
  private final Model owner;     // non-null: borrowed from this model

  private Tokenizer(org.libreason.internal.Tokenizer handle, String path) {
    this.handle = handle;
    this.owner = null;
    this.life = new Lifecycle(this, "Tokenizer " + path, new NativeRef(handle::delete));
  }

  /** A model's tokenizer: calls go through the model's lifecycle. */
  Tokenizer(Model owner, org.libreason.internal.Tokenizer handle) {
    this.handle = handle;
    this.owner = owner;
    this.life = owner.lifecycle();
  }

  /** Loads a tokenizer: a directory holding tokenizer.json, or the path of a tokenizer.json. */
  public static Tokenizer load(Path path) {
    return load(path.toString());
  }

  /** Loads a tokenizer: a directory holding tokenizer.json, or the path of a tokenizer.json. */
  public static Tokenizer load(String path) {
    Objects.requireNonNull(path, "path");
    NativeLibrary.ensureLoaded();
    org.libreason.internal.Tokenizer t = new org.libreason.internal.Tokenizer();
    try {
      Convert.check(t.load(path));
    } catch (RuntimeException | Error e) {
      t.delete();
      throw e;
    }
    return new Tokenizer(t, path);
  }

  /** Token ids of text (no special tokens added). */
  public int[] encode(String text) {
    return encode(text, false);
  }

  /** Token ids of text; addSpecialTokens adds the tokenizer's BOS/EOS as its post-processor says. */
  public int[] encode(String text, boolean addSpecialTokens) {
    Objects.requireNonNull(text, "text");
    life.enter();
    IdsResult r = null;
    try {
      r = handle.encode(text, addSpecialTokens);
      Convert.check(r.getStatus());
      return Convert.ints(r.getIds());
    } finally {
      if (r != null) r.delete();
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  /** The text of token ids. */
  public String decode(int[] ids) {
    return decode(ids, false);
  }

  public String decode(int[] ids, boolean skipSpecialTokens) {
    Objects.requireNonNull(ids, "ids");
    life.enter();
    IntVector v = null;
    TextResult r = null;
    try {
      v = Convert.ints(ids);
      r = handle.decode(v, skipSpecialTokens);
      Convert.check(r.getStatus());
      return r.getText();
    } finally {
      if (r != null) r.delete();
      if (v != null) v.delete();
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  /** One user message with the generation prompt, in the model's chat template. */
  public String chatPrompt(String user) {
    return chatPrompt(user, "");
  }

  /** A system message ("" for none) and one user message with the generation prompt. */
  public String chatPrompt(String user, String system) {
    Objects.requireNonNull(user, "user");
    Objects.requireNonNull(system, "system");
    life.enter();
    TextResult r = null;
    try {
      r = handle.chat_prompt(user, system);
      Convert.check(r.getStatus());
      return r.getText();
    } finally {
      if (r != null) r.delete();
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  public int vocabSize() {
    life.enter();
    try {
      return handle.vocab_size();
    } finally {
      life.exit();
      Reference.reachabilityFence(this);
    }
  }

  /** True when this tokenizer (or the model it belongs to) is closed. */
  public boolean isClosed() {
    return life.isClosed();
  }

  /** Frees a loaded tokenizer; does nothing for a model's tokenizer (closing the model does). */
  @Override
  public void close() {
    if (owner == null) life.close();
  }

  org.libreason.internal.Tokenizer handle() {
    return handle;
  }

  /** Retains the native tokenizer (and its model) for a dependent; false when closed. */
  Lifecycle lifecycle() {
    return life;
  }
}
