/*
 * A small HTTP service on libreason's Java binding and the JDK's built-in server
 * (com.sun.net.httpserver): POST /generate streams the completion's tokens to the client as they
 * are generated (chunked transfer encoding), several requests at once on one shared Model.
 * It shows how to embed the library in a Java service; for a ready-made OpenAI-compatible server
 * (chat completions, SSE streaming, reasoning_content, one continuous batch for every request),
 * run `reason serve --model DIR` instead (README, "reason serve").
 *
 *   # with the Debian packages installed (libreason-java puts the jar in /usr/share/java and the
 *   # JNI library in /usr/lib/x86_64-linux-gnu/jni, which the JVM searches):
 *   javac -cp /usr/share/java/libreason.jar -d out GenerateServer.java
 *   java -cp /usr/share/java/libreason.jar:out GenerateServer /path/to/model --port 8080
 *
 *   curl -N --data-binary 'User: What is 23 + 45?
 *   Assistant:' http://127.0.0.1:8080/generate
 *   curl -N -H 'Content-Type: application/json' \
 *        -d '{"prompt": "User: What is 23 + 45?\nAssistant:", "max_tokens": 64}' \
 *        http://127.0.0.1:8080/generate
 *
 * The body is the prompt text, or a JSON object {"prompt": ..., "max_tokens": ..., "temperature":
 * ..., "seed": ...} (greedy unless a temperature is given). GET /health answers "ok". The server
 * stops cleanly on SIGTERM/Ctrl-C (a shutdown hook stops the listener, then closes the model).
 * --port 0 picks a free port; the first line printed is "listening on http://HOST:PORT/".
 */

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.libreason.Model;
import org.libreason.ReasonException;
import org.libreason.SamplingOptions;
import org.libreason.Token;
import org.libreason.TokenStream;

public final class GenerateServer {
  private static final int MAX_BODY = 1 << 20;
  private static final int MAX_TOKENS_LIMIT = 4096;

  private final Model model;
  private final HttpServer server;
  private final ExecutorService workers;

  GenerateServer(Model model, String host, int port, int threads) throws IOException {
    this.model = model;
    this.server = HttpServer.create(new InetSocketAddress(host, port), 64);
    this.workers = Executors.newFixedThreadPool(threads);
    server.setExecutor(workers);
    server.createContext("/generate", this::generate);
    server.createContext("/health", ex -> reply(ex, 200, "ok\n"));
  }

  int port() {
    return server.getAddress().getPort();
  }

  void start() {
    server.start();
  }

  void stop() {
    server.stop(1);  // waits up to 1 s for exchanges in progress
    workers.shutdown();
    try {
      workers.awaitTermination(30, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private void generate(HttpExchange ex) throws IOException {
    try (ex) {
      if (!ex.getRequestMethod().equals("POST")) {
        reply(ex, 405, "use POST\n");
        return;
      }
      Request req;
      try {
        req = Request.parse(readBody(ex.getRequestBody()), ex.getRequestHeaders().getFirst("Content-Type"));
      } catch (IllegalArgumentException e) {
        reply(ex, 400, e.getMessage() + "\n");
        return;
      }
      SamplingOptions opts = SamplingOptions.builder().temperature(req.temperature).seed(req.seed)
          .maxNewTokens(req.maxTokens).build();
      TokenStream stream;
      try {
        stream = model.stream(req.prompt, opts);  // bad options fail here, before any byte is sent
      } catch (ReasonException e) {
        reply(ex, 400, e.getMessage() + "\n");
        return;
      }
      // Pull each token as the model produces it and send it as its own chunk. If the client goes
      // away, the write throws and closing the stream stops generation.
      try (stream) {
        ex.getResponseHeaders().set("Content-Type", "text/plain; charset=utf-8");
        ex.sendResponseHeaders(200, 0);  // 0: chunked transfer encoding
        OutputStream out = ex.getResponseBody();
        for (Token t : stream) {
          if (t.text().isEmpty()) continue;  // part of a multi-byte character
          out.write(t.text().getBytes(StandardCharsets.UTF_8));
          out.flush();
        }
        out.write(("\n[finish: " + stream.finishReason() + "]\n").getBytes(StandardCharsets.UTF_8));
      } catch (ReasonException e) {  // generation failed after the headers were sent
        ex.getResponseBody().write(("\n[error: " + e.getMessage() + "]\n").getBytes(StandardCharsets.UTF_8));
      }
    }
  }

  private static void reply(HttpExchange ex, int code, String text) throws IOException {
    byte[] b = text.getBytes(StandardCharsets.UTF_8);
    ex.getResponseHeaders().set("Content-Type", "text/plain; charset=utf-8");
    ex.sendResponseHeaders(code, b.length);
    ex.getResponseBody().write(b);
    ex.close();
  }

  private static String readBody(InputStream in) throws IOException {
    byte[] b = in.readNBytes(MAX_BODY + 1);
    if (b.length > MAX_BODY) throw new IllegalArgumentException("request body over " + MAX_BODY + " bytes");
    return new String(b, StandardCharsets.UTF_8);
  }

  /** What a POST /generate asks for. */
  static final class Request {
    String prompt;
    int maxTokens = 128;
    float temperature = 0;
    long seed = 0;

    static Request parse(String body, String contentType) {
      Request r = new Request();
      boolean json = (contentType != null && contentType.startsWith("application/json")) || body.stripLeading().startsWith("{");
      if (!json) {
        r.prompt = body;
      } else {
        Map<String, Object> o = MiniJson.parseObject(body);
        if (!(o.get("prompt") instanceof String p)) throw new IllegalArgumentException("\"prompt\" (a string) is required");
        r.prompt = p;
        if (o.containsKey("max_tokens")) r.maxTokens = (int) number(o, "max_tokens");
        if (o.containsKey("temperature")) r.temperature = (float) number(o, "temperature");
        if (o.containsKey("seed")) r.seed = (long) number(o, "seed");
      }
      if (r.prompt.isEmpty()) throw new IllegalArgumentException("empty prompt");
      if (r.maxTokens < 1 || r.maxTokens > MAX_TOKENS_LIMIT) {
        throw new IllegalArgumentException("max_tokens must be in [1, " + MAX_TOKENS_LIMIT + "]");
      }
      return r;
    }

    private static double number(Map<String, Object> o, String key) {
      if (!(o.get(key) instanceof Double d)) throw new IllegalArgumentException("\"" + key + "\" must be a number");
      return d;
    }
  }

  /** Just enough JSON for the request: one object of strings, numbers, booleans and null. */
  static final class MiniJson {
    private final String s;
    private int i;

    private MiniJson(String s) {
      this.s = s;
    }

    static Map<String, Object> parseObject(String text) {
      MiniJson p = new MiniJson(text);
      p.ws();
      Map<String, Object> o = p.object();
      p.ws();
      if (p.i != text.length()) throw p.error("trailing characters");
      return o;
    }

    private Map<String, Object> object() {
      expect('{');
      Map<String, Object> o = new HashMap<>();
      ws();
      if (peek() == '}') {
        i++;
        return o;
      }
      while (true) {
        ws();
        String key = string();
        ws();
        expect(':');
        ws();
        o.put(key, value());
        ws();
        char c = next();
        if (c == '}') return o;
        if (c != ',') throw error("expected ',' or '}'");
      }
    }

    private Object value() {
      char c = peek();
      if (c == '"') return string();
      if (s.startsWith("true", i)) {
        i += 4;
        return Boolean.TRUE;
      }
      if (s.startsWith("false", i)) {
        i += 5;
        return Boolean.FALSE;
      }
      if (s.startsWith("null", i)) {
        i += 4;
        return null;
      }
      int start = i;
      while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
      try {
        return Double.parseDouble(s.substring(start, i));
      } catch (NumberFormatException e) {
        throw error("expected a string, number, true, false or null");
      }
    }

    private String string() {
      expect('"');
      StringBuilder b = new StringBuilder();
      while (true) {
        char c = next();
        if (c == '"') return b.toString();
        if (c != '\\') {
          b.append(c);
          continue;
        }
        char e = next();
        switch (e) {
          case '"', '\\', '/' -> b.append(e);
          case 'b' -> b.append('\b');
          case 'f' -> b.append('\f');
          case 'n' -> b.append('\n');
          case 'r' -> b.append('\r');
          case 't' -> b.append('\t');
          case 'u' -> {
            if (i + 4 > s.length()) throw error("bad \\u escape");
            b.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
            i += 4;
          }
          default -> throw error("bad escape \\" + e);
        }
      }
    }

    private void ws() {
      while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
    }

    private char peek() {
      if (i >= s.length()) throw error("unexpected end");
      return s.charAt(i);
    }

    private char next() {
      char c = peek();
      i++;
      return c;
    }

    private void expect(char c) {
      if (next() != c) throw error("expected '" + c + "'");
    }

    private IllegalArgumentException error(String what) {
      return new IllegalArgumentException("bad JSON at offset " + i + ": " + what);
    }
  }

  public static void main(String[] args) throws Exception {
    String modelDir = null;
    String host = "127.0.0.1";
    int port = 8080;
    int threads = 4;
    for (int a = 0; a < args.length; a++) {
      switch (args[a]) {
        case "--port" -> port = Integer.parseInt(args[++a]);
        case "--host" -> host = args[++a];
        case "--threads" -> threads = Integer.parseInt(args[++a]);
        default -> modelDir = args[a];
      }
    }
    if (modelDir == null) {
      System.err.println("usage: GenerateServer MODEL_DIR [--port N (0: any free port)] [--host H] [--threads N]");
      System.exit(2);
    }
    Model model;
    try {
      model = Model.load(modelDir);
    } catch (ReasonException e) {
      System.err.println("cannot load the model: " + e.getMessage());
      System.exit(1);
      return;
    }
    GenerateServer s = new GenerateServer(model, host, port, threads);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      s.stop();
      model.close();
      System.out.println("stopped");
      System.out.flush();
    }));
    s.start();
    System.out.println("listening on http://" + host + ":" + s.port() + "/");
    System.out.flush();
  }
}
