// A client of the story, for tests/integration/culprit.rs, run by Java's source launcher against
// Debian's Apache HttpClient 4.5: WORKERS threads each send GET URL in a loop, each request
// through a CloseableHttpClient built for it and closed after it, which closes its pooled
// connection with it.
//
//	java -cp httpclient.jar:httpcore.jar:commons-logging.jar HttpClientChurn.java URL WORKERS
import org.apache.http.client.methods.CloseableHttpResponse;
import org.apache.http.client.methods.HttpGet;
import org.apache.http.impl.client.CloseableHttpClient;
import org.apache.http.impl.client.HttpClients;
import org.apache.http.util.EntityUtils;

public class HttpClientChurn {
    public static void main(String[] args) {
        String url = args[0];
        int workers = Integer.parseInt(args[1]);
        for (int i = 0; i < workers; i++) {
            new Thread(() -> {
                while (true) {
                    try (CloseableHttpClient client = HttpClients.createDefault();
                         CloseableHttpResponse response = client.execute(new HttpGet(url))) {
                        EntityUtils.consume(response.getEntity());
                    } catch (Exception e) {
                        try { Thread.sleep(100); } catch (InterruptedException stop) { return; }
                    }
                }
            }).start();
        }
        System.out.println("ready");
        System.out.flush();
    }
}
