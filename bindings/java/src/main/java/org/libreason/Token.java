package org.libreason;

/**
 * One generated token, as streamed.
 *
 * @param request which prompt of the batch it belongs to (0 for a single prompt or a stream)
 * @param id the token id
 * @param logprob its log-probability under softmax(logits / temperature)
 * @param text the text this token completes (UTF-8 characters are never split: "" while a
 *     multi-byte character is incomplete, then the whole character with the token that ends it)
 */
public record Token(long request, int id, float logprob, String text) {}
