//! Who is in a world: an owner, editors and viewers, all members of every project, as the
//! database would hold them, with their tokens.

use crate::clock::EPOCH_S;
use crate::world::Config;
use fsync_model::state::{Access, Profile, Project};
use fsync_model::MemStore;
use fsync_protocol::jwt::{self, Secret};
use fsync_reference::config::{anon_key, DEV_JWT_SECRET};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The projects and the people of a world.
#[derive(Clone)]
pub struct People {
    pub projects: Vec<Uuid>,
    pub anon: String,
    /// The owner's token (the driver starts sessions with it).
    pub owner: String,
    /// The editors' tokens, then the viewers'.
    pub members: Vec<Member>,
}

#[derive(Clone)]
pub struct Member {
    pub token: String,
    pub viewer: bool,
}

/// Seeds the model with the people and projects of `config`, drawn from `rng`.
pub fn seed(store: &MemStore, config: &Config, rng: &mut fastrand::Rng) -> People {
    let id = |rng: &mut fastrand::Rng| Uuid::from_u128(rng.u128(..));
    let owner = id(rng);
    let users: Vec<(Uuid, bool)> =
        (0..config.editors + config.viewers).map(|i| (id(rng), i >= config.editors)).collect();
    let projects: Vec<Uuid> = (0..config.projects.max(1)).map(|_| id(rng)).collect();
    store.seed(|state| {
        let mut members = BTreeMap::from([(owner, Access::Owner)]);
        for &(user, viewer) in &users {
            members.insert(user, if viewer { Access::Viewer } else { Access::Editor });
        }
        for user in members.keys() {
            state.profiles.insert(*user, Profile { email: Some(format!("{user}@sim.test")), display_name: None });
        }
        for (n, project) in projects.iter().enumerate() {
            let project_row = Project { name: format!("simulated {n}"), owner, seq: 0, members: members.clone() };
            state.projects.insert(*project, project_row);
        }
    });
    let secret = Secret::new(DEV_JWT_SECRET);
    let token = |user: Uuid| {
        jwt::sign(&secret, &jwt::user_claims(&user.to_string(), &format!("{user}@sim.test"), EPOCH_S, 24 * 3600))
    };
    People {
        projects,
        anon: anon_key(&secret),
        owner: token(owner),
        members: users.into_iter().map(|(user, viewer)| Member { token: token(user), viewer }).collect(),
    }
}
