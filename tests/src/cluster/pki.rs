//! The lab cluster's certificates and kubeconfigs: one CA signs the API server's serving
//! certificate, every component's client certificate (the user is the certificate's CN, its group
//! the O field, as kube-apiserver's x509 authenticator reads them) and each node's kubelet
//! serving certificate; one key signs ServiceAccount tokens. Written once per lab, all ECDSA P-256.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The cluster's PKI directory and the CA that signs into it.
pub struct Pki {
    pub dir: PathBuf,
    ca: Issuer<'static, KeyPair>,
}

/// A client identity: `user` is the certificate's CN, `group` its O field (rcgen writes one
/// value per attribute type, which is all the lab's identities need).
pub struct Identity<'a> {
    pub file: &'a str,
    pub user: &'a str,
    pub group: Option<&'a str>,
}

impl Pki {
    /// A new CA and ServiceAccount signing key in `dir`.
    pub fn create(dir: &Path) -> Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "netdiag-lab-ca");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let key = KeyPair::generate().context("failed to generate the CA key")?;
        let cert = params.self_signed(&key).context("failed to sign the CA")?;
        write(&dir.join("ca.crt"), &cert.pem())?;
        let sa = KeyPair::generate().context("failed to generate the ServiceAccount key")?;
        write(&dir.join("sa.key"), &sa.serialize_pem())?;
        write(&dir.join("sa.pub"), &sa.public_key_pem())?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca: Issuer::new(params, key),
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A serving certificate `FILE.crt`/`FILE.key` for these DNS names and addresses.
    pub fn serving(&self, file: &str, cn: &str, dns: &[&str], ips: &[IpAddr]) -> Result<()> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = dns
            .iter()
            .map(|d| Ok(SanType::DnsName((*d).try_into()?)))
            .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
            .collect::<Result<_, rcgen::Error>>()
            .with_context(|| format!("bad subject alternative name for {file}"))?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(file, params)
    }

    /// A client certificate `FILE.crt`/`FILE.key` for the identity.
    pub fn client(&self, id: &Identity) -> Result<()> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, id.user);
        if let Some(group) = id.group {
            params.distinguished_name.push(DnType::OrganizationName, group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(id.file, params)
    }

    fn sign(&self, file: &str, mut params: CertificateParams) -> Result<()> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().with_context(|| format!("failed to generate the key of {file}"))?;
        let cert = params
            .signed_by(&key, &self.ca)
            .with_context(|| format!("failed to sign {file}"))?;
        write(&self.path(&format!("{file}.crt")), &cert.pem())?;
        write(&self.path(&format!("{file}.key")), &key.serialize_pem())
    }

    /// A kubeconfig at `to` for the identity whose certificate is `FILE`, talking to `server`.
    pub fn kubeconfig(&self, to: &Path, server: &str, file: &str) -> Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: netdiag-lab\n  cluster:\n    server: {server}\n    \
             certificate-authority: {ca}\nusers:\n- name: {file}\n  user:\n    client-certificate: {crt}\n    \
             client-key: {key}\ncontexts:\n- name: netdiag-lab\n  context:\n    cluster: netdiag-lab\n    \
             user: {file}\ncurrent-context: netdiag-lab\n",
            ca = self.path("ca.crt").display(),
            crt = self.path(&format!("{file}.crt")).display(),
            key = self.path(&format!("{file}.key")).display(),
        );
        write(to, &text)
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}
