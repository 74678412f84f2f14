//! One [`NodeClient`] per broker, made on first use and replaced when the broker's
//! address changes: for callers that talk to whichever broker leads something
//! (transaction markers, transaction verification).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::ClientConfig;
use crate::node::NodeClient;

pub struct NodeClients {
    config: ClientConfig,
    /// By node id, with the address each client was made for.
    clients: Mutex<HashMap<i32, (String, Arc<NodeClient>)>>,
}

impl NodeClients {
    pub fn new(config: ClientConfig) -> NodeClients {
        NodeClients {
            config,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `node` at `address` (a new one if the address changed).
    pub fn get(&self, node: i32, address: String) -> Arc<NodeClient> {
        let mut clients = self.clients.lock();
        match clients.get(&node) {
            Some((a, c)) if *a == address => c.clone(),
            _ => {
                let c = Arc::new(NodeClient::new(address.clone(), self.config.clone()));
                clients.insert(node, (address, c.clone()));
                c
            }
        }
    }
}
