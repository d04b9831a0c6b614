# Run by `cmake --install` and by CPack (install(CODE) in packaging/CMakeLists.txt): installs
# what lives outside the prefix — the sample configuration and the logrotate snippet in
# SYSCONFDIR, the systemd units in /lib/systemd/system — with the paths of this install written
# into them.
# GNUInstallDirs' rule, applied at install time rather than at configure time: prefix /usr →
# /etc (the .deb, CPack installs it with prefix /usr), any other prefix P → P/etc. Expects
# ATLAS_PKG_SRC (packaging/), ATLAS_SBINDIR, ATLAS_BINDIR and ATLAS_DOCDIR_REL (relative to the prefix). The
# files are generated in a scratch directory of TMPDIR, not in the build tree (which cpack may
# only read).
set(prefix "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/+$" "" prefix "${prefix}")
# The units likewise: Debian 12's systemdsystemunitdir (pkg-config systemd) is /lib/systemd/system.
if(prefix STREQUAL "/usr" OR prefix STREQUAL "")
  set(etc "/etc")
  set(unitdir "/lib/systemd/system")
else()
  set(etc "${prefix}/etc")
  set(unitdir "${prefix}/lib/systemd/system")
endif()
set(ATLAS_CONFDIR "${etc}/atlas")
set(ATLAS_SBINDIR "${prefix}/${ATLAS_SBINDIR}")
set(ATLAS_BINDIR "${prefix}/${ATLAS_BINDIR}")
set(ATLAS_DOCDIR "${prefix}/${ATLAS_DOCDIR_REL}")

set(tmp "$ENV{TMPDIR}")
if(NOT tmp)
  set(tmp /tmp)
endif()
string(RANDOM LENGTH 12 tag)
set(ATLAS_PKG_GEN "${tmp}/atlas-install-${tag}")
file(MAKE_DIRECTORY "${ATLAS_PKG_GEN}")
configure_file("${ATLAS_PKG_SRC}/switchd.conf.in" "${ATLAS_PKG_GEN}/switchd.conf" @ONLY)
foreach(unit atlas-switchd.service atlas-hsm-sim.service atlas-issuer-sim@.service
             atlas-partitions.service atlas-partitions.timer)
  configure_file("${ATLAS_PKG_SRC}/systemd/${unit}.in" "${ATLAS_PKG_GEN}/${unit}" @ONLY)
endforeach()

# 0644 here; the package's postinst makes them 0640 root:atlas once the group exists.
file(INSTALL DESTINATION "${ATLAS_CONFDIR}" TYPE FILE
     FILES "${ATLAS_PKG_GEN}/switchd.conf" "${ATLAS_PKG_SRC}/hsm-sim.env"
           "${ATLAS_PKG_SRC}/issuer-sim-WALLET1.env")
file(INSTALL DESTINATION "${etc}/logrotate.d" TYPE FILE RENAME atlas
     FILES "${ATLAS_PKG_SRC}/atlas.logrotate")
file(INSTALL DESTINATION "${unitdir}" TYPE FILE
     FILES "${ATLAS_PKG_GEN}/atlas-switchd.service" "${ATLAS_PKG_GEN}/atlas-hsm-sim.service"
           "${ATLAS_PKG_GEN}/atlas-issuer-sim@.service" "${ATLAS_PKG_GEN}/atlas-partitions.service"
           "${ATLAS_PKG_GEN}/atlas-partitions.timer")
file(REMOVE_RECURSE "${ATLAS_PKG_GEN}")
