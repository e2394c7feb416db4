//! The names of an app's units, built and parsed in one place.
//!
//! `NAME@.service`, `NAME@N.service`, `NAME.target`, the socket units, and the wants links
//! `NAME.target.wants/NAME@N.service -> ../NAME@.service` that persist the instance count.
//! The renderer, the unit-directory writer, the reload engine and the commands all go through
//! [`UnitNames`], so a name that is built here is parsed back here, and a round-trip test
//! keeps the two directions in step.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use crate::config::FdName;

/// The hidden command the graceful memory check's unit runs (`sysmgr memory-check NAME`).
pub const MEMORY_CHECK_COMMAND: &str = "memory-check";

/// One symlink, relative to the unit directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Where the link lives, e.g. `web.target.wants/web@1.service`.
    pub path: String,
    /// What it points to, e.g. `../web@.service`.
    pub target: String,
}

/// The app, slot and generation of an instance unit, `NAME@N.service` (generation 0) or
/// `NAME@N:G.service` (a later generation a surge reload started, see [`split_instance`]);
/// `None` for any other unit. (An app name has no `@`.)
pub fn parse_unit(unit: &str) -> Option<(&str, u32, u32)> {
    let (app, rest) = unit.split_once('@')?;
    let (slot, generation) = split_instance(rest.strip_suffix(".service")?)?;
    (!app.is_empty()).then_some((app, slot, generation))
}

/// The app and instance number (the slot, whatever the generation) of an instance unit;
/// `None` for any other unit.
pub fn parse_instance(unit: &str) -> Option<(&str, u32)> {
    parse_unit(unit).map(|(app, slot, _)| (app, slot))
}

/// The generation each slot of an app runs: absent slots run generation 0 (`NAME@N.service`,
/// what every app starts with); a surge reload alternates a slot between generation 0 and 1
/// (`NAME@N:1.service`). Read from the target's wants links ([`UnitNames::linked_slot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generations(BTreeMap<u32, u32>);

impl Generations {
    /// The generation slot `slot` runs.
    pub fn of(&self, slot: u32) -> u32 {
        self.0.get(&slot).copied().unwrap_or(0)
    }

    /// Records that `slot` runs `generation`.
    pub fn set(&mut self, slot: u32, generation: u32) {
        if generation == 0 {
            self.0.remove(&slot);
        } else {
            self.0.insert(slot, generation);
        }
    }

    /// The slots not at generation 0, with theirs.
    pub fn later(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.0.iter().map(|(&s, &g)| (s, g))
    }
}

/// The instance `n` of a template unit: `STEM@N.SUFFIX` for `STEM@.SUFFIX`; `None` for a
/// unit that is not a template.
pub fn template_instance(template: &str, n: u32) -> Option<String> {
    let (stem, suffix) = template.split_once("@.")?;
    Some(format!("{stem}@{n}.{suffix}"))
}

/// Names of the units of an app, so the controller and the renderer agree.
#[derive(Debug, Clone)]
pub struct UnitNames {
    name: String,
}

impl UnitNames {
    /// Names for app `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
        }
    }

    /// The app name.
    pub fn app(&self) -> &str {
        &self.name
    }

    /// `NAME.target`.
    pub fn target(&self) -> String {
        format!("{}.target", self.name)
    }

    /// `NAME@.service`.
    pub fn service_template(&self) -> String {
        format!("{}@.service", self.name)
    }

    /// `NAME@N.service`.
    pub fn instance(&self, n: u32) -> String {
        format!("{}@{n}.service", self.name)
    }

    /// `NAME@%i.service`: the instance a unit of the same instance refers to.
    pub fn instance_template_ref(&self) -> String {
        format!("{}@%i.service", self.name)
    }

    /// `NAME@*.service`: a pattern that matches every instance (and more; filter with
    /// [`Self::instance_of`]).
    pub fn instance_pattern(&self) -> String {
        format!("{}@*.service", self.name)
    }

    /// `NAME[@.-]*`: a pattern that matches every unit of the app (its instances, target and
    /// sockets, `NAME-FDNAME.socket` included) and more (other apps whose names start with
    /// `NAME-` or `NAME.`); filter what it finds by exact name.
    pub fn units_pattern(&self) -> String {
        format!("{}[@.-]*", self.name)
    }

    /// The instance number (slot) of `NAME@N.service` or of a later generation of it,
    /// `NAME@N:G.service`; `None` for any other unit, including the instances of an app whose
    /// name starts with this one (`NAME-admin@1.service`).
    pub fn instance_of(&self, unit: &str) -> Option<u32> {
        self.slot_of(unit).map(|(slot, _)| slot)
    }

    /// The unit slot `slot` runs as, by `generations`.
    pub fn unit_of(&self, slot: u32, generations: &Generations) -> String {
        self.slot_unit(slot, generations.of(slot))
    }

    /// The unit of generation `generation` of slot `slot`: `NAME@N.service` for generation
    /// 0 (what every app starts with), `NAME@N:G.service` for the later ones a surge reload
    /// starts next to the old process. `:` is a plain character of unit names (no escaping),
    /// so `%i` is `N:G`; `sysmgr exec` gives the worker the slot alone ([`split_instance`]).
    pub fn slot_unit(&self, slot: u32, generation: u32) -> String {
        format!(
            "{}@{}.service",
            self.name,
            instance_string(slot, generation)
        )
    }

    /// The slot and generation of `NAME@N.service` (generation 0) or `NAME@N:G.service`;
    /// `None` for any other unit, including other apps' whose name starts with this one.
    pub fn slot_of(&self, unit: &str) -> Option<(u32, u32)> {
        let instance = unit
            .strip_prefix(&self.name)?
            .strip_prefix('@')?
            .strip_suffix(".service")?;
        split_instance(instance)
    }

    /// The socket unit stem for fd name group `index` (0 is the primary one): `NAME` or
    /// `NAME-FDNAME`.
    pub fn socket_stem(&self, index: usize, fd_name: &FdName) -> String {
        if index == 0 {
            self.name.clone()
        } else {
            format!("{}-{fd_name}", self.name)
        }
    }

    /// The socket unit for fd name group `index`, as the service refers to it: `NAME.socket`
    /// (shared) or `NAME@%i.socket` (per instance).
    pub fn socket_unit(&self, index: usize, fd_name: &FdName, per_instance: bool) -> String {
        let stem = self.socket_stem(index, fd_name);
        if per_instance {
            format!("{stem}@%i.socket")
        } else {
            format!("{stem}.socket")
        }
    }

    /// The socket unit file for fd name group `index`: `NAME.socket` or `NAME@.socket`.
    pub fn socket_file(&self, index: usize, fd_name: &FdName, per_instance: bool) -> String {
        let stem = self.socket_stem(index, fd_name);
        if per_instance {
            format!("{stem}@.socket")
        } else {
            format!("{stem}.socket")
        }
    }

    /// `NAME-sysmgr-health@.socket`: the template of each instance's own health socket
    /// (`health_check`). `sysmgr-health` is refused as a `listen` name, so no socket of the
    /// app's can take this name.
    pub fn health_socket_file(&self) -> String {
        format!("{}-{}@.socket", self.name, crate::config::HEALTH_FD_NAME)
    }

    /// `NAME-sysmgr-health@%i.socket`: the health socket as its instance refers to it.
    pub fn health_socket_ref(&self) -> String {
        format!("{}-{}@%i.socket", self.name, crate::config::HEALTH_FD_NAME)
    }

    /// `NAME-sysmgr-check@.service`: the template of the oneshot that runs a `health_check`
    /// command for an instance.
    pub fn health_command_file(&self) -> String {
        format!("{}-sysmgr-check@.service", self.name)
    }

    /// `NAME-sysmgr-check@%i.service`: the check of the instance that refers to it.
    pub fn health_command_ref(&self) -> String {
        format!("{}-sysmgr-check@%i.service", self.name)
    }

    /// Where instance `instance` (a number, or `%i` in a unit) has its health socket, below
    /// the manager's runtime directory (`%t`: `/run`, or `$XDG_RUNTIME_DIR` for `--user`).
    pub fn health_socket_path(&self, instance: &str) -> String {
        format!("sysmgr/{}/health-{instance}.sock", self.name)
    }

    /// `NAME-cron.timer`: `cron_restart`'s timer.
    pub fn cron_timer(&self) -> String {
        format!("{}-cron.timer", self.name)
    }

    /// `NAME-cron.service`: what the cron timer runs, a graceful `sysmgr reload NAME`.
    pub fn cron_service(&self) -> String {
        format!("{}-cron.service", self.name)
    }

    /// `NAME-memory.timer`: the graceful `max_memory_restart` check's timer.
    pub fn memory_timer(&self) -> String {
        format!("{}-memory.timer", self.name)
    }

    /// `NAME-memory.service`: the check the memory timer runs.
    pub fn memory_service(&self) -> String {
        format!("{}-memory.service", self.name)
    }

    /// `NAME.target.wants`, the directory whose links say which instances the target starts.
    pub fn wants_dir(&self) -> String {
        format!("{}.wants", self.target())
    }

    /// The wants link that makes `NAME.target` start instance `n`.
    pub fn instance_link(&self, n: u32) -> Link {
        Link {
            path: format!("{}/{}", self.wants_dir(), self.instance(n)),
            target: format!("../{}", self.service_template()),
        }
    }

    /// The wants link that makes `NAME.target` start generation `generation` of `slot`
    /// (generation 0: the same as [`Self::instance_link`]).
    pub fn slot_link(&self, slot: u32, generation: u32) -> Link {
        Link {
            path: format!("{}/{}", self.wants_dir(), self.slot_unit(slot, generation)),
            target: format!("../{}", self.service_template()),
        }
    }

    /// `links` (the renderer's, generation 0) with each instance link at the generation its
    /// slot runs by `generations`; other links unchanged.
    pub fn links_at(&self, links: &[Link], generations: &Generations) -> Vec<Link> {
        links
            .iter()
            .map(|link| match self.linked_slot(&link.path, &link.target) {
                Some((slot, _)) => self.slot_link(slot, generations.of(slot)),
                None => link.clone(),
            })
            .collect()
    }

    /// The link that hooks `NAME.target` into `into` (the default target), as a generator
    /// does for units it cannot enable.
    pub fn target_link(&self, into: &str) -> Link {
        Link {
            path: format!("{into}.wants/{}", self.target()),
            target: format!("../{}", self.target()),
        }
    }

    /// The links for instances `1..=n`: the persisted instance count.
    pub fn instance_links(&self, n: NonZeroU32) -> Vec<Link> {
        (1..=n.get()).map(|i| self.instance_link(i)).collect()
    }

    /// The slot and generation a wants link stands for, read back from its path (relative
    /// to the unit directory) and its target; `None` for a link that is not one of this app's
    /// instances (an admin's own link, another app's, a link to something else).
    pub fn linked_slot(&self, path: &str, target: &str) -> Option<(u32, u32)> {
        let unit = path.strip_prefix(&self.wants_dir())?.strip_prefix('/')?;
        let points_at_template = target == format!("../{}", self.service_template())
            || target.ends_with(&format!("/{}", self.service_template()));
        points_at_template.then(|| self.slot_of(unit)).flatten()
    }

    /// The instance a wants link stands for (its slot, whatever the generation); see
    /// [`Self::linked_slot`].
    pub fn linked_instance(&self, path: &str, target: &str) -> Option<u32> {
        self.linked_slot(path, target).map(|(slot, _)| slot)
    }
}

/// The instance string of a slot's generation: `N`, or `N:G` from generation 1 on.
pub fn instance_string(slot: u32, generation: u32) -> String {
    if generation == 0 {
        slot.to_string()
    } else {
        format!("{slot}:{generation}")
    }
}

/// The slot and generation an instance string (systemd's `%i`) names: `3` is slot 3,
/// generation 0; `3:2` slot 3, generation 2. Only the spelling [`instance_string`] builds is
/// accepted (no sign, no leading zero, no `:0`), so one unit never has two names.
pub fn split_instance(instance: &str) -> Option<(u32, u32)> {
    fn number(s: &str) -> Option<u32> {
        let canonical = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        canonical.then(|| s.parse().ok()).flatten()
    }
    let (slot, generation) = match instance.split_once(':') {
        Some((slot, generation)) => (number(slot)?, number(generation).filter(|&g| g > 0)?),
        None => (number(instance)?, 0),
    };
    (slot > 0).then_some((slot, generation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn instance_numbers_come_from_the_unit_name_of_this_app_only() {
        let web = UnitNames::new("web");
        assert_eq!(web.instance_of("web@12.service"), Some(12));
        assert_eq!(web.instance_of("web-admin@1.service"), None);
        assert_eq!(web.instance_of("web@.service"), None);
        assert_eq!(web.instance_of("web@1.socket"), None);
        assert_eq!(web.instance_of("web@+1.service"), None);
        assert_eq!(web.instance_of("web@12:1.service"), Some(12));
        assert_eq!(parse_unit("web@12:1.service"), Some(("web", 12, 1)));
        assert_eq!(parse_instance("web@12:1.service"), Some(("web", 12)));
        assert_eq!(
            parse_instance("web-admin@7.service"),
            Some(("web-admin", 7))
        );
        assert_eq!(parse_instance("@7.service"), None);
        assert_eq!(parse_instance("web.target"), None);
    }

    #[test]
    fn template_instances_and_the_pattern_of_an_apps_units() {
        assert_eq!(
            template_instance("web-admin@.socket", 3).as_deref(),
            Some("web-admin@3.socket")
        );
        assert_eq!(template_instance("web.socket", 3), None);
        assert_eq!(UnitNames::new("web").units_pattern(), "web[@.-]*");
    }

    #[test]
    fn only_links_into_the_template_are_instances() {
        let web = UnitNames::new("web");
        let link = web.instance_link(3);
        assert_eq!(link.path, "web.target.wants/web@3.service");
        assert_eq!(link.target, "../web@.service");
        assert_eq!(
            web.linked_instance(
                "web.target.wants/web@3.service",
                "/etc/systemd/system/web@.service"
            ),
            Some(3)
        );
        assert_eq!(
            web.linked_instance("web.target.wants/web@3.service", "../other@.service"),
            None
        );
        assert_eq!(
            web.linked_instance("web.target.wants/web-admin@3.service", "../web@.service"),
            None
        );
        assert_eq!(
            web.linked_instance("api.target.wants/web@3.service", "../web@.service"),
            None
        );
    }

    #[test]
    fn slots_and_generations_have_one_spelling_each() {
        let web = UnitNames::new("web");
        assert_eq!(web.slot_unit(3, 0), "web@3.service");
        assert_eq!(web.slot_unit(3, 2), "web@3:2.service");
        assert_eq!(web.slot_of("web@3.service"), Some((3, 0)));
        assert_eq!(web.slot_of("web@3:2.service"), Some((3, 2)));
        for other in [
            "web@3:0.service",
            "web@03.service",
            "web@3:02.service",
            "web@0.service",
            "web@+3.service",
            "web@3:.service",
            "web@:2.service",
            "web@3:2:1.service",
            "web-admin@3:2.service",
            "web@3:2.socket",
        ] {
            assert_eq!(web.slot_of(other), None, "{other}");
        }
        assert_eq!(split_instance("12:7"), Some((12, 7)));
        assert_eq!(split_instance(""), None);
    }

    proptest! {
        /// Whatever is built is parsed back to the same instance, for any valid app name.
        #[test]
        fn names_and_links_round_trip(name in "[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,20}", n in 1u32..=1024) {
            let names = UnitNames::new(&name);
            prop_assert_eq!(names.instance_of(&names.instance(n)), Some(n));
            let link = names.instance_link(n);
            prop_assert_eq!(names.linked_instance(&link.path, &link.target), Some(n));
            prop_assert_eq!(names.instance_of(&names.service_template()), None);
            prop_assert_eq!(names.instance_of(&names.target()), None);
            let other = UnitNames::new(&format!("{name}-x"));
            prop_assert_eq!(names.instance_of(&other.instance(n)), None);
            prop_assert_eq!(names.linked_instance(&other.instance_link(n).path, &link.target), None);
            for g in [0u32, 1, 2, u32::MAX] {
                prop_assert_eq!(names.slot_of(&names.slot_unit(n, g)), Some((n, g)));
                prop_assert_eq!(other.slot_of(&names.slot_unit(n, g)), None);
            }
            prop_assert_eq!(names.slot_unit(n, 0), names.instance(n));
        }
    }
}
