//! Optional TLS on the public listener: rustls with TLS 1.3 and 1.2 only, the certificate chain
//! and key read from PEM files, and re-read on SIGHUP without dropping a connection.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// Reads the files and builds a server config: TLS 1.3 and 1.2, ALPN `h2` then `http/1.1`.
/// The error names the file and what is wrong with it, never key material.
pub fn load(files: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs = CertificateDer::pem_file_iter(&files.cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cert_file {}: {e}", files.cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "cert_file {}: no PEM certificate in it",
            files.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| format!("key_file {}: {e}", files.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "cert_file {} and key_file {}: {e}",
                files.cert_file.display(),
                files.key_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The server config in force; a reload swaps it, and only new handshakes see the new one.
pub struct Tls {
    current: ArcSwap<rustls::ServerConfig>,
}

impl Tls {
    pub fn new(files: &TlsConfig) -> Result<Tls, String> {
        Ok(Tls {
            current: ArcSwap::new(load(files)?),
        })
    }

    /// Re-reads the files. On failure the config in force stays.
    pub fn reload(&self, files: &TlsConfig) -> Result<(), String> {
        self.current.store(load(files)?);
        Ok(())
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &std::path::Path, cert: &str, key: &str) -> TlsConfig {
        let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
        TlsConfig {
            cert_file,
            key_file,
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("glg-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn missing_and_malformed_files_are_named() {
        let dir = temp_dir("bad");
        let missing = TlsConfig {
            cert_file: dir.join("nope.pem"),
            key_file: dir.join("nope-key.pem"),
        };
        let e = load(&missing).unwrap_err();
        assert!(e.starts_with("cert_file ") && e.contains("nope.pem"), "{e}");

        let e = load(&files(&dir, "not pem at all", "")).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");

        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let e = load(&files(&dir, &cert.cert.pem(), "garbage")).unwrap_err();
        assert!(e.starts_with("key_file "), "{e}");

        // A key that does not belong to the certificate.
        let other = rcgen::KeyPair::generate().unwrap();
        let e = load(&files(&dir, &cert.cert.pem(), &other.serialize_pem())).unwrap_err();
        assert!(e.contains("cert_file") && e.contains("key_file"), "{e}");
        assert!(!e.contains("PRIVATE KEY"), "no key material in errors: {e}");
    }

    #[test]
    fn a_matching_pair_loads_with_alpn() {
        let dir = temp_dir("good");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let config = load(&files(
            &dir,
            &cert.cert.pem(),
            &cert.signing_key.serialize_pem(),
        ))
        .unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
