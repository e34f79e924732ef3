//! TLS for the in-cluster endpoint: the server side (a mounted certificate and key, e.g. a
//! cert-manager Secret, else a self-signed certificate made at start) and the client side the
//! agent uses to call its peers (verified against a CA bundle when one is mounted).
//!
//! No I/O beyond reading the mounted files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("failed to read the tls certificate {path}")]
    Cert {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("failed to read the tls key {path}")]
    Key {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the tls certificate {cert} exists but the key {key} does not (mount both or neither)")]
    HalfMounted { cert: String, key: String },
    #[error("failed to generate a self-signed certificate")]
    Generate(#[source] rcgen::Error),
    #[error("the tls certificate and key do not make a server configuration")]
    Config(#[source] rustls::Error),
    #[error("failed to read the peer ca bundle {path}")]
    PeerCa {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
}

/// Where the server certificate came from, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    Mounted(PathBuf),
    SelfSigned,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configuration: the mounted `cert`/`key` when `cert` exists, else a self-signed
/// certificate for `names` (the pod IP and DNS names).
pub fn server_config(
    cert: &Path,
    key: &Path,
    names: Vec<String>,
) -> Result<(ServerConfig, CertSource), TlsError> {
    let shown = |p: &Path| p.display().to_string();
    let (chain, private, source) = match (cert.exists(), key.exists()) {
        (true, true) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|source| TlsError::Cert {
                    path: shown(cert),
                    source,
                })?;
            let private = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
                path: shown(key),
                source,
            })?;
            (chain, private, CertSource::Mounted(cert.to_path_buf()))
        }
        (false, false) => {
            let made = rcgen::generate_simple_self_signed(names).map_err(TlsError::Generate)?;
            let private = PrivateKeyDer::try_from(made.signing_key.serialize_der())
                .map_err(|_| TlsError::Generate(rcgen::Error::CouldNotParseKeyPair))?;
            (vec![made.cert.der().clone()], private, CertSource::SelfSigned)
        }
        _ => {
            return Err(TlsError::HalfMounted {
                cert: shown(cert),
                key: shown(key),
            });
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, source))
}

/// The configuration for calling peer agents: verified against the CA bundle at `ca` when given,
/// else accepting any certificate (see the trust model in the agent's README).
pub fn peer_client_config(ca: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let config = match ca {
        Some(path) => {
            let peer_ca = |source| TlsError::PeerCa {
                path: path.display().to_string(),
                source,
            };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(peer_ca)? {
                roots.add(cert.map_err(peer_ca)?).map_err(TlsError::Config)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// Accepts any server certificate but still checks the handshake signatures, so the session is
/// encrypted to whoever holds the presented key.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_mounted_files_gives_a_self_signed_certificate() {
        let missing = Path::new("/nonexistent/netdiag/tls.crt");
        let (_, source) = server_config(missing, missing, vec!["10.244.1.5".into()]).unwrap();
        assert_eq!(source, CertSource::SelfSigned);
    }

    #[test]
    fn a_mounted_pair_is_used_and_half_a_pair_is_refused() {
        let dir = std::env::temp_dir().join(format!("netdiag-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["netdiag-agent".to_string()]).unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        let half = server_config(&cert, &key, vec![]).unwrap_err();
        assert!(half.to_string().contains("exists but the key"), "{half}");
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        let (_, source) = server_config(&cert, &key, vec![]).unwrap();
        assert_eq!(source, CertSource::Mounted(cert.clone()));
        assert!(peer_client_config(Some(&cert)).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
