/*
 * The ctest check of GenerateServer (example_java_http): starts the server as its own process on
 * a free port against a model, POSTs prompts, checks the streamed answers, then stops it with
 * SIGTERM and checks that it shut down cleanly. Usage: ServerCheck MODEL_DIR
 */

import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

public final class ServerCheck {
  private static void check(boolean ok, String what) {
    if (!ok) throw new AssertionError(what);
  }

  public static void main(String[] args) throws Exception {
    String model = args[0];
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command().orElse("java"));
    String lib = System.getProperty("libreason.java.library");
    if (lib != null) cmd.add("-Dlibreason.java.library=" + lib);
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add("GenerateServer");
    cmd.add(model);
    cmd.add("--port");
    cmd.add("0");
    Process server = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
    try {
      BufferedReader out = new BufferedReader(new InputStreamReader(server.getInputStream(), StandardCharsets.UTF_8));
      String first = out.readLine();
      check(first != null && first.startsWith("listening on http://"), "server did not start: " + first);
      String base = first.substring("listening on ".length());
      System.out.println("server: " + first);
      HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
          .connectTimeout(Duration.ofSeconds(30)).build();

      // A JSON request, read as a stream: the answer arrives in several chunks.
      String json = "{\"prompt\": \"User: What is 23 + 45?\\nAssistant:\", \"max_tokens\": 64}";
      HttpResponse<InputStream> r = http.send(HttpRequest.newBuilder(URI.create(base + "generate"))
          .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(json))
          .timeout(Duration.ofSeconds(120)).build(), HttpResponse.BodyHandlers.ofInputStream());
      check(r.statusCode() == 200, "status " + r.statusCode());
      check(r.headers().firstValue("transfer-encoding").orElse("").equalsIgnoreCase("chunked"),
          "not chunked: " + r.headers().map());
      StringBuilder body = new StringBuilder();
      int reads = 0;
      try (InputStream in = r.body()) {
        byte[] buf = new byte[4096];
        for (int n; (n = in.read(buf)) > 0; reads++) body.append(new String(buf, 0, n, StandardCharsets.UTF_8));
      }
      System.out.println("POST /generate (json) -> " + reads + " reads: " + body.toString().strip());
      check(body.indexOf("\\boxed{") >= 0, "no \\boxed{ in the answer");
      check(body.indexOf("\\boxed{68}") >= 0, "wrong answer");

      // The plain-text form.
      HttpResponse<String> t = http.send(HttpRequest.newBuilder(URI.create(base + "generate"))
          .POST(HttpRequest.BodyPublishers.ofString("User: What is 12 + 30?\nAssistant:"))
          .timeout(Duration.ofSeconds(120)).build(), HttpResponse.BodyHandlers.ofString());
      System.out.println("POST /generate (text) -> " + t.body().strip());
      check(t.statusCode() == 200 && t.body().contains("\\boxed{"), "text request: " + t.body());

      // A bad request is refused with 400 and a reason.
      HttpResponse<String> bad = http.send(HttpRequest.newBuilder(URI.create(base + "generate"))
          .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString("{\"max_tokens\": 3}"))
          .build(), HttpResponse.BodyHandlers.ofString());
      check(bad.statusCode() == 400 && bad.body().contains("prompt"), "bad request: " + bad.statusCode() + " " + bad.body());

      // Shut down: SIGTERM runs the server's shutdown hook.
      server.toHandle().destroy();  // SIGTERM, keeping our end of its stdout open
      check(server.waitFor(60, TimeUnit.SECONDS), "server did not stop");
      String rest = out.readLine();
      check("stopped".equals(rest), "no clean shutdown: " + rest);
      System.out.println("server stopped (exit " + server.exitValue() + ")");
      System.out.println("example_java_http: OK");
    } finally {
      server.destroyForcibly();
    }
  }
}
