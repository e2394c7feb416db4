# sysmgr %preun: on erase ($1 = 0), not upgrade, stop every app the generator made: once the
# generator link is gone the next daemon-reload drops their units, and an instance still
# running would be left with no unit file. The admin's app files in /etc/sysmgr stay.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
	/usr/libexec/sysmgr/stop-generated-apps || :
fi
