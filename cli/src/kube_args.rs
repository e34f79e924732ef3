//! kubectl's connection flags (`--kubeconfig`, `--context`, `-n`), and the client they build.

use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Connection flags shared by every command that talks to the API server.
#[derive(Debug, Clone, Args, Default)]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeConfigError {
    #[error("failed to read kubeconfig {path}")]
    Read {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("failed to load kubeconfig")]
    Load(#[source] kube::config::KubeconfigError),
    #[error("failed to create a Kubernetes client")]
    Client(#[source] kube::Error),
}

impl KubeArgs {
    /// The client configuration kubectl would use with the same flags and environment.
    pub async fn config(&self) -> Result<kube::Config, KubeConfigError> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|source| KubeConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(KubeConfigError::Load)
            }
            None => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(KubeConfigError::Load),
        }
    }

    /// A client and the namespace a bare name refers to (the context's, else `default`).
    pub async fn client(&self) -> Result<(kube::Client, String), KubeConfigError> {
        let config = self.config().await?;
        let namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).map_err(KubeConfigError::Client)?;
        Ok((client, namespace))
    }
}
