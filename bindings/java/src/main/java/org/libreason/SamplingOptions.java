package org.libreason;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * How to sample: immutable, built with {@link #builder()}.
 *
 * <pre>{@code
 * SamplingOptions o = SamplingOptions.builder().temperature(0.6f).topP(0.95f).maxNewTokens(512)
 *     .stopStrings("</answer>").seed(7).build();
 * }</pre>
 */
public final class SamplingOptions {
  private final float temperature;
  private final int topK;
  private final float topP;
  private final float minP;
  private final float repetitionPenalty;
  private final int maxNewTokens;
  private final long seed;
  private final int[] stopTokenIds;
  private final List<String> stopStrings;
  private final boolean ignoreEos;

  private SamplingOptions(Builder b) {
    temperature = b.temperature;
    topK = b.topK;
    topP = b.topP;
    minP = b.minP;
    repetitionPenalty = b.repetitionPenalty;
    maxNewTokens = b.maxNewTokens;
    seed = b.seed;
    stopTokenIds = b.stopTokenIds.clone();
    stopStrings = List.copyOf(b.stopStrings);
    ignoreEos = b.ignoreEos;
  }

  /** The library's defaults: temperature 1, no top-k/top-p/min-p, 256 new tokens, seed 0. */
  public static SamplingOptions defaults() {
    return builder().build();
  }

  /** Greedy decoding (temperature 0) of at most maxNewTokens tokens. */
  public static SamplingOptions greedy(int maxNewTokens) {
    return builder().temperature(0).maxNewTokens(maxNewTokens).build();
  }

  /** DeepSeek-R1's settings: temperature 0.6, top-p 0.95 (other fields at their defaults). */
  public static SamplingOptions r1() {
    return builder().temperature(0.6f).topP(0.95f).build();
  }

  public static Builder builder() {
    return new Builder();
  }

  /** A builder starting from these options. */
  public Builder toBuilder() {
    Builder b = new Builder();
    b.temperature = temperature;
    b.topK = topK;
    b.topP = topP;
    b.minP = minP;
    b.repetitionPenalty = repetitionPenalty;
    b.maxNewTokens = maxNewTokens;
    b.seed = seed;
    b.stopTokenIds = stopTokenIds.clone();
    b.stopStrings = stopStrings;
    b.ignoreEos = ignoreEos;
    return b;
  }

  public float temperature() {
    return temperature;
  }

  public int topK() {
    return topK;
  }

  public float topP() {
    return topP;
  }

  public float minP() {
    return minP;
  }

  public float repetitionPenalty() {
    return repetitionPenalty;
  }

  public int maxNewTokens() {
    return maxNewTokens;
  }

  public long seed() {
    return seed;
  }

  public int[] stopTokenIds() {
    return stopTokenIds.clone();
  }

  public List<String> stopStrings() {
    return stopStrings;
  }

  public boolean ignoreEos() {
    return ignoreEos;
  }

  @Override
  public String toString() {
    return "SamplingOptions[temperature=" + temperature + ", topK=" + topK + ", topP=" + topP + ", minP=" + minP
        + ", repetitionPenalty=" + repetitionPenalty + ", maxNewTokens=" + maxNewTokens + ", seed=" + seed
        + ", stopTokenIds=" + Arrays.toString(stopTokenIds) + ", stopStrings=" + stopStrings + ", ignoreEos="
        + ignoreEos + "]";
  }

  /** The SWIG struct (the caller deletes it). */
  org.libreason.internal.SamplingOptions toNative() {
    org.libreason.internal.SamplingOptions o = new org.libreason.internal.SamplingOptions();
    o.setTemperature(temperature);
    o.setTop_k(topK);
    o.setTop_p(topP);
    o.setMin_p(minP);
    o.setRepetition_penalty(repetitionPenalty);
    o.setMax_new_tokens(maxNewTokens);
    o.setSeed(seed);
    o.setIgnore_eos(ignoreEos);
    if (stopTokenIds.length > 0) {
      org.libreason.internal.IntVector v = Convert.ints(stopTokenIds);
      try {
        o.setStop_token_ids(v);
      } finally {
        v.delete();
      }
    }
    if (!stopStrings.isEmpty()) {
      org.libreason.internal.StringVector v = Convert.strings(stopStrings);
      try {
        o.setStop_strings(v);
      } finally {
        v.delete();
      }
    }
    return o;
  }

  /** Builds {@link SamplingOptions}; values are checked by the library when used. */
  public static final class Builder {
    private float temperature = 1.0f;
    private int topK = 0;
    private float topP = 1.0f;
    private float minP = 0.0f;
    private float repetitionPenalty = 1.0f;
    private int maxNewTokens = 256;
    private long seed = 0;
    private int[] stopTokenIds = new int[0];
    private List<String> stopStrings = List.of();
    private boolean ignoreEos = false;

    private Builder() {}

    /** 0 = greedy. */
    public Builder temperature(float v) {
      temperature = v;
      return this;
    }

    /** 0 = off. */
    public Builder topK(int v) {
      topK = v;
      return this;
    }

    /** 1 = off. */
    public Builder topP(float v) {
      topP = v;
      return this;
    }

    /** 0 = off. */
    public Builder minP(float v) {
      minP = v;
      return this;
    }

    /** 1 = off. */
    public Builder repetitionPenalty(float v) {
      repetitionPenalty = v;
      return this;
    }

    public Builder maxNewTokens(int v) {
      maxNewTokens = v;
      return this;
    }

    /** Request i of a batch uses seed + i. */
    public Builder seed(long v) {
      seed = v;
      return this;
    }

    public Builder stopTokenIds(int... ids) {
      stopTokenIds = ids.clone();
      return this;
    }

    public Builder stopStrings(String... strings) {
      stopStrings = List.of(strings);
      return this;
    }

    public Builder stopStrings(List<String> strings) {
      stopStrings = List.copyOf(strings);
      return this;
    }

    /** Keep generating past EOS (until max_new_tokens or a stop). */
    public Builder ignoreEos(boolean v) {
      ignoreEos = v;
      return this;
    }

    public SamplingOptions build() {
      Objects.requireNonNull(stopStrings);
      return new SamplingOptions(this);
    }
  }
}
