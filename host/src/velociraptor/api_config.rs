//! The `api_client` YAML that `velociraptor config api_client` writes: the
//! CA, the client certificate and key, and where the API listens.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The name a Velociraptor server's certificate is issued to, whatever
/// host or address it is reached at.
pub const DEFAULT_SERVER_NAME: &str = "VelociraptorServer";

/// The fields of Velociraptor's `ApiClientConfig` that a client needs.
#[derive(Clone, Deserialize)]
pub struct ApiClientConfig {
    pub ca_certificate: String,
    pub client_cert: String,
    pub client_private_key: String,
    /// `host:port` of the API (Velociraptor's `API.bind_port`, 8001 by default).
    pub api_connection_string: String,
    /// The API user: the CN of `client_cert`.
    #[serde(default)]
    pub name: String,
    /// The name the server certificate is checked against (Velociraptor's
    /// own tools never write it; `VelociraptorServer` when absent).
    #[serde(default)]
    pub pinned_server_name: Option<String>,
    /// Where it was read from, for messages.
    #[serde(skip)]
    pub path: PathBuf,
}

impl std::fmt::Debug for ApiClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of logs.
        f.debug_struct("ApiClientConfig")
            .field("path", &self.path)
            .field("api_connection_string", &self.api_connection_string)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What is wrong with an api_client file.
#[derive(Debug, thiserror::Error)]
pub enum ApiConfigError {
    #[error("reading the api_client config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an api_client config: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {field}: {message}")]
    Field {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
}

impl ApiClientConfig {
    /// Reads and checks the file at `path`.
    /// The file holds a private key: like ssh, velonotify refuses it when
    /// others than its owner may read or write it.
    pub fn load(path: &Path) -> Result<Self, ApiConfigError> {
        use std::os::unix::fs::PermissionsExt as _;
        let read_error = |source| ApiConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(read_error)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ApiConfigError::Field {
                path: path.to_path_buf(),
                field: "client_private_key",
                message: format!(
                    "the file is open to others than its owner (mode {mode:04o}): `chmod 600 {}`",
                    path.display()
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        Self::parse(&text, path)
    }

    /// Parses the YAML text of the file at `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ApiConfigError> {
        let mut config: ApiClientConfig = serde_yaml_ng::from_str(text).map_err(|e| ApiConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.path = path.to_path_buf();
        config.check()?;
        Ok(config)
    }

    fn field_error(&self, field: &'static str, message: impl Into<String>) -> ApiConfigError {
        ApiConfigError::Field {
            path: self.path.clone(),
            field,
            message: message.into(),
        }
    }

    fn check(&self) -> Result<(), ApiConfigError> {
        let pem = |field: &'static str, text: &str, marker: &str| {
            if text.contains(marker) {
                Ok(())
            } else {
                Err(self.field_error(field, format!("expected PEM text with a {marker} block")))
            }
        };
        pem("ca_certificate", &self.ca_certificate, "-----BEGIN CERTIFICATE-----")?;
        pem("client_cert", &self.client_cert, "-----BEGIN CERTIFICATE-----")?;
        pem("client_private_key", &self.client_private_key, "PRIVATE KEY-----")?;
        if self.client_private_key.contains("ENCRYPTED") {
            return Err(self.field_error(
                "client_private_key",
                "the key is encrypted (made with --password); generate the config without --password \
                 and protect the file instead (mode 0600)",
            ));
        }
        if self.api_connection_string.starts_with("unix://") {
            return Err(self.field_error(
                "api_connection_string",
                "unix sockets are not supported; bind the API to a TCP address",
            ));
        }
        if !self.api_connection_string.contains(':') {
            return Err(self.field_error(
                "api_connection_string",
                format!("expected host:port, got {:?}", self.api_connection_string),
            ));
        }
        Ok(())
    }

    /// Checks, before dialling, that `client_cert` is signed by
    /// `ca_certificate` (the server's CA) and valid now: a server would
    /// refuse it, and the reason is clearer found here than read from a
    /// TLS alert.
    pub fn check_certificates(&self) -> Result<(), ApiConfigError> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, UnixTime};

        let ca: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(self.ca_certificate.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| self.field_error("ca_certificate", format!("unreadable PEM: {e}")))?;
        let mut chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(self.client_cert.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| self.field_error("client_cert", format!("unreadable PEM: {e}")))?;
        if chain.is_empty() {
            return Err(self.field_error("client_cert", "no certificate"));
        }
        let end_entity = chain.remove(0);
        let mut roots = rustls::RootCertStore::empty();
        for cert in ca {
            roots
                .add(cert)
                .map_err(|e| self.field_error("ca_certificate", format!("not a CA certificate: {e}")))?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
                .build()
                .map_err(|e| self.field_error("ca_certificate", e.to_string()))?;
        verifier
            .verify_client_cert(&end_entity, &chain, UnixTime::now())
            .map(|_| ())
            .map_err(|e| {
                let why = match &e {
                    rustls::Error::InvalidCertificate(
                        rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. },
                    ) => "it has expired; generate a new api_client config".to_string(),
                    rustls::Error::InvalidCertificate(
                        rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature,
                    ) => "it is not signed by ca_certificate (the server's CA): was it made for another server?"
                        .to_string(),
                    other => other.to_string(),
                };
                self.field_error(
                    "client_cert",
                    format!("the server would refuse this certificate: {why} ({e})"),
                )
            })
    }

    /// The name to check the server's certificate against: `configured`
    /// (from velonotify's config), else the file's, else the default.
    pub fn server_name(&self, configured: Option<&str>) -> String {
        configured
            .or(self.pinned_server_name.as_deref())
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_SERVER_NAME)
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn yaml(key: &str, connection: &str) -> String {
        let indent = |pem: &str| pem.lines().map(|l| format!("  {l}\n")).collect::<String>();
        format!(
            "ca_certificate: |\n{}client_cert: |\n{}client_private_key: |\n{}api_connection_string: {connection}\nname: velonotify\n",
            indent(CERT),
            indent(CERT),
            indent(key)
        )
    }

    #[test]
    fn reads_the_file_velociraptor_writes() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n";
        let config = ApiClientConfig::parse(&yaml(key, "127.0.0.1:8001"), Path::new("api.yaml")).unwrap();
        assert_eq!(config.api_connection_string, "127.0.0.1:8001");
        assert_eq!(config.name, "velonotify");
        assert!(config.client_private_key.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert_eq!(config.server_name(None), "VelociraptorServer");
        assert_eq!(config.server_name(Some("velo.corp")), "velo.corp");
    }

    /// A key file others may read is refused, with the command that fixes
    /// it; the same file made private loads.
    #[test]
    fn a_key_file_open_to_others_is_refused_with_advice() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.yaml");
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n";
        std::fs::write(&path, yaml(key, "127.0.0.1:8001")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = ApiClientConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.ends_with(&format!(
                "client_private_key: the file is open to others than its owner (mode 0644): `chmod 600 {}`",
                path.display()
            )),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(ApiClientConfig::load(&path).is_ok());
    }

    #[test]
    fn an_encrypted_key_is_refused_with_advice() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nMIIE\n-----END RSA PRIVATE KEY-----\n";
        let err = ApiClientConfig::parse(&yaml(key, "h:8001"), Path::new("api.yaml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("api.yaml: client_private_key: the key is encrypted"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_field_or_port_is_named() {
        let err = ApiClientConfig::parse("ca_certificate: x\n", Path::new("api.yaml")).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
        let key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
        let err = ApiClientConfig::parse(&yaml(key, "velo.corp"), Path::new("api.yaml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("api.yaml: api_connection_string: expected host:port"),
            "{err}"
        );
    }
}
