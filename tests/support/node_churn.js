// A client of the story, for tests/integration/culprit.rs: WORKERS loops each sending GET to
// 127.0.0.1:PORT through an http.Agent made for the request and destroyed after its response, so
// that no connection is reused (what a Node.js client does when it builds its agent per request;
// before Node.js 19 the global agent did not keep connections alive either).
//
//	node node_churn.js PORT WORKERS
const http = require('http');
const [port, workers] = process.argv.slice(2).map(Number);

function loop() {
  const agent = new http.Agent({ keepAlive: true });
  const req = http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
    res.resume();
    res.on('end', () => { agent.destroy(); setImmediate(loop); });
  });
  req.on('error', () => { agent.destroy(); setTimeout(loop, 100); });
}

for (let i = 0; i < workers; i++) loop();
console.log('ready');
