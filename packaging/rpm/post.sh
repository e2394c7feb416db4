# sysmgr %post: the generator link is in place; systemd runs generators only on boot and on
# daemon-reload, so reload now for the apps in /etc/sysmgr to get (current) units. Nothing
# is started or restarted: a fresh install has no app, and on upgrade the running instances
# keep serving until the admin runs `sysmgr reload NAME`. Only where systemd is the running
# service manager (not in a chroot or an image build).
if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || :
fi
