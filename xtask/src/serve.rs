//! A small static file server for `www/` (and the model under `/models/`), or another
//! site's folder (the npm consumer test's apps), with the
//! headers the page needs: `application/wasm`, and COOP/COEP so that the page is
//! cross-origin isolated (precise timers, and threads when a wasm build uses them).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct Server {
    pub port: u16,
}

/// What a server serves: files from `www`, the model under `/models/` from `models`, and,
/// for the repository's own page, `/presets/`, `/bench/` and `/node_modules/` from `repo`;
/// `isolated`: with COOP/COEP (without, the page cannot have threads: how a host that
/// cannot set headers serves it).
#[derive(Clone)]
struct Site {
    www: PathBuf,
    models: PathBuf,
    repo: Option<PathBuf>,
    isolated: bool,
}

impl Site {
    fn repository(root: &Path) -> Site {
        Site {
            www: root.join("www"),
            models: root.join("models"),
            repo: Some(root.to_path_buf()),
            isolated: true,
        }
    }
}

/// Serves the page on 127.0.0.1:`port` (0: any free port) from a background thread.
pub fn spawn(root: &Path, port: u16) -> Result<Server> {
    spawn_site(Site::repository(root), port)
}

/// Serves the page as [`spawn`] does on any free port, but without COOP/COEP.
pub fn spawn_not_isolated(root: &Path) -> Result<Server> {
    let site = Site {
        isolated: false,
        ..Site::repository(root)
    };
    spawn_site(site, 0)
}

/// Serves another checkout's page (its `www/`, `models/` and `presets/`) as [`spawn`]
/// serves this one's, on any free port.
pub fn spawn_checkout(checkout: &Path) -> Result<Server> {
    spawn_site(Site::repository(checkout), 0)
}

/// Serves `dir` (another site, such as an app that uses the npm package), with the
/// repository's models under `/models/`, on any free port.
pub fn spawn_folder(root: &Path, dir: &Path) -> Result<Server> {
    spawn_site(
        Site {
            www: dir.to_path_buf(),
            models: root.join("models"),
            repo: None,
            isolated: true,
        },
        0,
    )
}

fn spawn_site(site: Site, port: u16) -> Result<Server> {
    let listener = bind(port)?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || accept(listener, site));
    Ok(Server { port })
}

pub fn serve_forever(root: &Path, port: u16) -> Result<()> {
    let listener = bind(port)?;
    println!("xtask: serving the page on http://127.0.0.1:{port}/  (Ctrl-C to stop)");
    accept(listener, Site::repository(root));
    Ok(())
}

fn bind(port: u16) -> Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", port)).with_context(|| format!("cannot listen on 127.0.0.1:{port}"))
}

fn accept(listener: TcpListener, site: Site) {
    for stream in listener.incoming().flatten() {
        let site = site.clone();
        std::thread::spawn(move || {
            let _ = handle(stream, &site);
        });
    }
}

/// The file a URL path names on `site`, if any.
fn resolve(site: &Site, url_path: &str) -> Option<PathBuf> {
    let path = url_path.split(['?', '#']).next()?;
    if path.split('/').any(|seg| seg == ".." || seg.contains('\\')) {
        return None;
    }
    let rel = path.trim_start_matches('/');
    let from_repo = site.repo.as_ref().filter(|_| {
        ["node_modules/", "bench/", "presets/"]
            .iter()
            .any(|p| rel.starts_with(p))
    });
    let file = if let Some(m) = rel.strip_prefix("models/") {
        site.models.join(m)
    } else if let Some(repo) = from_repo {
        repo.join(rel)
    } else {
        site.www.join(if rel.is_empty() { "index.html" } else { rel })
    };
    let file = if file.is_dir() { file.join("index.html") } else { file };
    file.is_file().then_some(file)
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "ts" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn handle(mut stream: TcpStream, site: &Site) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Skip the headers: nothing in them changes the answer.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let isolation = match site.isolated {
        true => "Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\n",
        false => "",
    };
    let common = format!(
        "{isolation}Cross-Origin-Resource-Policy: same-origin\r\nCache-Control: no-cache\r\nConnection: close\r\n"
    );
    let Some(file) = resolve(site, target).filter(|_| method == "GET" || method == "HEAD") else {
        let body = "not found\n";
        write!(
            stream,
            "HTTP/1.1 404 Not Found\r\n{common}Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    };
    let mut f = std::fs::File::open(&file)?;
    let len = f.metadata()?.len();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\n{common}Content-Type: {}\r\nContent-Length: {len}\r\n\r\n",
        content_type(&file)
    )?;
    if method == "GET" {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            stream.write_all(&buf[..n])?;
        }
    }
    Ok(())
}

/// Debian's nginx serving the repository with `deploy/nginx/anote.conf` on a free loopback
/// port (stopped when dropped): what a deployment runs, for the browser tests.
pub struct Nginx {
    pub port: u16,
    child: std::process::Child,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn_nginx(root: &Path) -> Result<Nginx> {
    // A free port: bound, then released for nginx.
    let port = bind(0)?.local_addr()?.port();
    let dir = crate::workspace::target_dir(root).join("nginx");
    std::fs::create_dir_all(&dir)?;
    let root_str = root.to_str().context("the repository's path is not UTF-8")?;
    let site = std::fs::read_to_string(root.join("deploy/nginx/anote.conf"))?
        .replace("/srv/anote", root_str)
        .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"));
    std::fs::write(dir.join("anote.conf"), site)?;
    let d = dir.display();
    // Only what running in the foreground, as this user, in target/ needs around the site.
    let main = format!(
        "daemon off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
         http {{\n  include /etc/nginx/mime.types;\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;\n  include {d}/anote.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main)?;
    let child = std::process::Command::new(crate::setup::NGINX)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdin(std::process::Stdio::null())
        .spawn()
        .context("starting nginx (cargo xtask setup installs it)")?;
    let nginx = Nginx { port, child };
    // Ready when it answers.
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(nginx);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    anyhow::bail!("nginx did not listen on {port}: see {d}/error.log")
}
